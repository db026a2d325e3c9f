import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, signIn, signInAsAdmin, waitForHydration, watchForViolations } from './helpers';

test('an admin signs in and lands on the overview', async ({ page }) => {
  const problems = watchForViolations(page);
  await signInAsAdmin(page);
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId('whoami')).toHaveText('Administrator');
  for (const section of ['APIs', 'Agents', 'Policies', 'Consent', 'Risk', 'Audit', 'Settings']) {
    await expect(page.getByRole('link', { name: section, exact: true })).toBeVisible();
  }
  await waitForHydration(page);
  // Client-side navigation after hydration: the inventory, then the audit trail.
  await page.getByRole('link', { name: 'APIs', exact: true }).click();
  await expect(page.getByRole('heading', { name: 'Inventory' })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'Register an API' })).toBeVisible();
  await page.getByRole('link', { name: 'Audit', exact: true }).click();
  await expect(page.getByTestId('chain-status')).toContainText('Chain intact');
  await expect(page.getByTestId('audit').getByText('session.login').first()).toBeVisible();
  expect(problems).toEqual([]);
});

test('a wrong password gets a message and no session', async ({ page, context }) => {
  await signIn(page, ADMIN_EMAIL, 'definitely not it');
  await expect(page.getByTestId('login-error')).toHaveText('Email or password is incorrect.');
  await signIn(page, 'nobody@example.com', 'definitely not it');
  await expect(page.getByTestId('login-error')).toHaveText('Email or password is incorrect.');
  const cookies = await context.cookies();
  expect(cookies.filter((c) => c.name.startsWith('__Host-palisade'))).toEqual([]);
  await page.goto('/settings');
  await expect(page).toHaveURL(/\/login\?next=/);
});

test('the session cookie is __Host-, HttpOnly, Secure, SameSite=Lax', async ({ page, context }) => {
  await signInAsAdmin(page);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === '__Host-palisade_session');
  expect(session).toBeDefined();
  expect(session!.httpOnly).toBe(true);
  expect(session!.secure).toBe(true);
  expect(session!.sameSite).toBe('Lax');
  expect(session!.path).toBe('/');
  expect(await page.evaluate(() => document.cookie)).not.toContain('palisade_session');
});

test('a signed-in visitor is sent on to the page they asked for', async ({ page }) => {
  await page.goto('/settings/tokens');
  await expect(page).toHaveURL(/\/login\?next=%2Fsettings%2Ftokens|\/login\?next=\/settings\/tokens/);
  await page.getByLabel('Email').fill(ADMIN_EMAIL);
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/settings\/tokens$/);
});
