import { test, expect } from '@playwright/test';
import { signInAsAdmin, waitForHydration } from './helpers';

test('a personal API token is shown once, works on the REST API, and stops working when revoked', async ({ page, playwright, baseURL }) => {
  await signInAsAdmin(page);
  await page.goto('/settings/tokens');
  await waitForHydration(page);
  await page.getByLabel('Name').fill('ci-e2e');
  await page.getByRole('button', { name: 'Create token' }).click();
  const secret = (await page.getByTestId('secret').textContent())!;
  expect(secret).toMatch(/^pal_[0-9a-f]{64}$/);

  const api = await playwright.request.newContext({ baseURL, extraHTTPHeaders: { Authorization: `Bearer ${secret}` } });
  const me = await api.get('/api/v1/me');
  expect(me.status()).toBe(200);
  expect((await me.json()).roles).toEqual(['admin']);

  const row = page.getByRole('row', { name: /ci-e2e/ });
  await row.getByRole('button', { name: 'Revoke' }).click();
  await expect(page.getByRole('row', { name: /ci-e2e/ })).toContainText('revoked');
  const after = await api.get('/api/v1/me');
  expect(after.status()).toBe(401);
  expect((await after.json()).code).toBe('unauthorized');
  await api.dispose();
});
