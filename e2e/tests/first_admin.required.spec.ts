import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, signIn, signOut, totp, waitForHydration, watchForViolations } from './helpers';

// Against the server with the shipped defaults: admins must have a second factor.
test('the first admin must set up two-factor authentication before anything else', async ({ page }) => {
  const problems = watchForViolations(page);
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await expect(page).toHaveURL(/\/settings\?notice=enroll-mfa/);
  await expect(page.getByTestId('mfa-required')).toBeVisible();
  // Nothing else opens until it is set up.
  await page.goto('/apis');
  await expect(page).toHaveURL(/\/settings\?notice=enroll-mfa/);
  await waitForHydration(page);

  const section = page.locator('#two-factor');
  await section.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const secret = (await section.getByTestId('mfa-secret').textContent())!.trim();
  const enrolledAt = Date.now();
  await section.getByLabel('Code from the app').fill(totp(secret, enrolledAt));
  await section.getByRole('button', { name: 'Confirm' }).click();
  await expect(section.getByTestId('recovery-codes').locator('li')).toHaveCount(10);
  await page.goto('/apis');
  await expect(page.getByRole('heading', { name: 'APIs' }).first()).toBeVisible();

  // The sign-in policy: the configured default until an admin changes it here.
  await page.goto('/settings/users');
  await waitForHydration(page);
  const policy = page.locator('#sign-in-policy');
  await expect(policy.getByTestId('mfa-policy')).toContainText('Administrator, Security');
  await expect(policy.getByTestId('mfa-policy')).toContainText('configured default');
  await policy.getByRole('checkbox', { name: 'Developer' }).check();
  await policy.getByRole('button', { name: 'Save sign-in policy' }).click();
  await expect(policy.getByText('Sign-in policy saved')).toBeVisible();
  await expect(policy.getByTestId('mfa-policy')).toContainText('Administrator, Developer, Security');
  await expect(policy.getByTestId('mfa-policy')).not.toContainText('configured default');
  await signOut(page);

  // From now on the admin signs in with the password and a code.
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await page.getByLabel('Code from your authenticator app').fill(totp(secret, enrolledAt + 30_000));
  await page.getByRole('button', { name: 'Verify' }).click();
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
  expect(problems).toEqual([]);
});
