import { test, expect } from '@playwright/test';
import { createUser, signIn, signInAsAdmin, signOut, totp, waitForHydration, watchForViolations } from './helpers';

const EMAIL = 'ciso.mfa.e2e@example.com';
const PASSWORD = 'two factor e2e password';

test('a security user sets up an authenticator, signs in with a code, and once with a recovery code', async ({ page }) => {
  const problems = watchForViolations(page);
  await signInAsAdmin(page);
  await createUser(page, EMAIL, 'security', null, PASSWORD);
  await signOut(page);

  await signIn(page, EMAIL, PASSWORD);
  await page.goto('/settings');
  await waitForHydration(page);
  const section = page.locator('#two-factor');
  await expect(section.getByTestId('mfa-status')).toContainText('Off');
  await section.getByRole('button', { name: 'Set up an authenticator app' }).click();
  await expect(section.locator('.qr svg')).toBeVisible();
  const secret = (await section.getByTestId('mfa-secret').textContent())!.trim();
  await section.getByLabel('Code from the app').fill('000000' === totp(secret, Date.now()) ? '111111' : '000000');
  await section.getByRole('button', { name: 'Confirm' }).click();
  await expect(section.getByRole('alert')).toBeVisible();
  const enrolledAt = Date.now();
  await section.getByLabel('Code from the app').fill(totp(secret, enrolledAt));
  await section.getByRole('button', { name: 'Confirm' }).click();
  const codes = section.getByTestId('recovery-codes').locator('li');
  await expect(codes).toHaveCount(10);
  const recovery = (await codes.first().textContent())!.trim();
  await expect(section.getByTestId('mfa-status')).toContainText('On: 10 recovery codes left');
  await signOut(page);

  // The password alone now leads to the second step; the next code signs in.
  await signIn(page, EMAIL, PASSWORD);
  await expect(page.getByRole('heading', { name: 'Two-factor authentication' })).toBeVisible();
  await page.getByLabel('Code from your authenticator app').fill('abcdef');
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(page.getByTestId('login-error')).toContainText('not right');
  await page.getByLabel('Code from your authenticator app').fill(totp(secret, enrolledAt + 30_000));
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
  await signOut(page);

  // A recovery code works once.
  await signIn(page, EMAIL, PASSWORD);
  await page.getByLabel('Code from your authenticator app').fill(recovery);
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
  await page.goto('/settings');
  await expect(page.locator('#two-factor').getByTestId('mfa-status')).toContainText('On: 9 recovery codes left');
  await signOut(page);
  await signIn(page, EMAIL, PASSWORD);
  await page.getByLabel('Code from your authenticator app').fill(recovery);
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(page.getByTestId('login-error')).toContainText('used already');
  expect(problems).toEqual([]);
});
