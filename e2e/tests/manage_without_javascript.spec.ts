import { test, expect } from '@playwright/test';
import { signInAsAdmin } from './helpers';

test.use({ javaScriptEnabled: false });

test('forms, errors and one-time secrets work with JavaScript off', async ({ page }) => {
  await signInAsAdmin(page);
  await page.goto('/settings/teams');
  await page.getByLabel('Name').fill('No Script Team');
  await page.getByRole('button', { name: 'Create team' }).click();
  await expect(page.getByRole('cell', { name: 'No Script Team' })).toBeVisible();
  // The same name again: the error comes back to the form through the redirect.
  await page.getByLabel('Name').fill('No Script Team');
  await page.getByRole('button', { name: 'Create team' }).click();
  await expect(page.getByRole('alert')).toContainText('That team name is already taken.');

  await page.goto('/settings/tokens');
  await page.getByLabel('Name').fill('no-js-token');
  await page.getByRole('button', { name: 'Create token' }).click();
  const secret = await page.getByTestId('secret').textContent();
  expect(secret).toMatch(/^pal_[0-9a-f]{64}$/);
  await expect(page.getByRole('cell', { name: 'no-js-token' })).toBeVisible();
  await page.reload();
  await expect(page.getByTestId('secret')).toHaveCount(0);

  // Navigation is plain links.
  await page.getByRole('link', { name: 'Policies', exact: true }).click();
  await expect(page.getByRole('heading', { name: 'Revisions' })).toBeVisible();
});
