import { test, expect } from '@playwright/test';
import { signInAsAdmin, signOut } from './helpers';

test('signing out ends the session on the server: the old cookie is refused', async ({ page, context, playwright, baseURL }) => {
  await signInAsAdmin(page);
  const session = (await context.cookies()).find((c) => c.name === '__Host-palisade_session')!;
  expect(session).toBeDefined();
  await signOut(page);

  // Replay the old cookie from outside the browser, as a thief would.
  const thief = await playwright.request.newContext({ baseURL, extraHTTPHeaders: { Cookie: `${session.name}=${session.value}` } });
  const page_ = await thief.get('/settings/users', { maxRedirects: 0 });
  expect(page_.status()).toBe(303);
  expect(page_.headers()['location']).toContain('/login');
  const rpc = await thief.post('/rpc/list_users', { headers: { Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' }, data: '' });
  expect(rpc.status()).toBe(401);
  await thief.dispose();

  await page.goto('/');
  await expect(page).toHaveURL(/\/login/);
});
