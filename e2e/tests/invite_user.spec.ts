import { test, expect } from '@playwright/test';
import { signIn, signInAsAdmin, waitForHydration } from './helpers';

const INVITED = 'auditor.e2e@example.com';
const INVITED_PASSWORD = 'auditor password 1';

test('an invited auditor sets a password from the one-time link; disabling ends their session', async ({ browser, page }) => {
  await signInAsAdmin(page);
  await page.goto('/settings/users');
  await waitForHydration(page);
  await page.getByLabel('Email').fill(INVITED);
  await page.getByLabel('Role').selectOption('auditor');
  await page.getByRole('button', { name: 'Create user' }).click();
  const link = (await page.getByTestId('secret').textContent())!;
  expect(link).toMatch(/\/setup-password\?token=pps_[0-9a-f]{64}$/);
  await expect(page.getByTestId('users').getByRole('row', { name: new RegExp(INVITED) })).toContainText('invited');

  // The invited user, in their own browser.
  const theirs = await browser.newContext();
  const invitee = await theirs.newPage();
  await invitee.goto(link);
  await expect(invitee.getByText(`For ${INVITED}.`)).toBeVisible();
  await waitForHydration(invitee);
  await invitee.getByLabel('Password', { exact: true }).fill(INVITED_PASSWORD);
  await invitee.getByLabel('Password again').fill('not the same password');
  await invitee.getByRole('button', { name: 'Set password' }).click();
  await expect(invitee.getByRole('alert')).toContainText('the two entries differ');
  await invitee.getByLabel('Password', { exact: true }).fill(INVITED_PASSWORD);
  await invitee.getByLabel('Password again').fill(INVITED_PASSWORD);
  await invitee.getByRole('button', { name: 'Set password' }).click();
  await expect(invitee).toHaveURL(/\/login\?notice=password-set/);
  // The link worked once.
  await invitee.goto(link);
  await expect(invitee.getByRole('alert')).toContainText('expired or was already used');

  await signIn(invitee, INVITED, INVITED_PASSWORD);
  await expect(invitee.getByTestId('whoami')).toHaveText('auditor.e2e');
  // Auditors read user administration but get no forms.
  await invitee.goto('/settings/users');
  await expect(invitee.getByTestId('users')).toBeVisible();
  await expect(invitee.getByRole('button', { name: 'Create user' })).toHaveCount(0);

  // The admin disables the auditor: their open session ends at once.
  await page.getByTestId('users').getByRole('link', { name: INVITED }).click();
  await waitForHydration(page);
  await page.getByRole('button', { name: 'Disable account' }).click();
  await expect(page.getByTestId('status')).toHaveText('disabled');
  await invitee.reload();
  await expect(invitee).toHaveURL(/\/login/);
  await signIn(invitee, INVITED, INVITED_PASSWORD);
  await expect(invitee.getByTestId('login-error')).toBeVisible();
  await theirs.close();
});
