import { test, expect, Page } from '@playwright/test';
import { ADMIN_EMAIL, signIn, signInAsAdmin, signOut, waitForHydration, watchForViolations } from './helpers';

const AUDITOR = 'trail-reader.e2e@example.com';
const DEVELOPER = 'dev.audit.e2e@example.com';
const PASSWORD = 'audit e2e password 1';

async function createUser(page: Page, email: string, role: string) {
  await page.goto('/settings/users');
  await waitForHydration(page);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Role').selectOption(role);
  await page.getByLabel(/Initial password/).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create user' }).click();
  await expect(page.getByText(`${email} created.`)).toBeVisible();
}

test('an auditor filters the trail, opens an entry and sees it verified; a developer sees only their own', async ({ page }) => {
  const problems = watchForViolations(page);
  // A failed sign-in first, so there is a failure to find.
  await signIn(page, ADMIN_EMAIL, 'not the admin password');
  await signInAsAdmin(page);
  await createUser(page, AUDITOR, 'auditor');
  await createUser(page, DEVELOPER, 'developer');
  await page.goto('/settings/teams');
  await waitForHydration(page);
  await page.getByLabel('Name').fill('Audited Team');
  await page.getByRole('button', { name: 'Create team' }).click();
  await expect(page.getByText('Team created.')).toBeVisible();
  await signOut(page);

  await signIn(page, AUDITOR, PASSWORD);
  await page.goto('/audit');
  await expect(page.getByTestId('chain-status')).toContainText('Chain intact');
  // Checkpoints are signed every second here; the banner names the last one.
  await expect(page.getByTestId('last-checkpoint')).toContainText(/\d+ signed checkpoints verified; the last, at \d{4}-\d\d-\d\d/);
  const table = page.getByTestId('audit');
  await expect(table.getByText('team.create').first()).toBeVisible();

  // Filters are a plain GET form: they land in the URL.
  await page.getByLabel('Outcome').selectOption('failure');
  await page.getByRole('button', { name: 'Filter' }).click();
  await expect(page).toHaveURL(/outcome=failure/);
  await expect(table.locator('tbody tr')).not.toHaveCount(0);
  for (const outcome of await table.locator('tbody tr td:nth-child(6)').allTextContents()) {
    expect(outcome).toBe('failure');
  }

  await page.goto('/audit?q=Audited+Team');
  await table.getByText('team.create').first().click();
  await expect(table.getByText('"Audited Team"')).toBeVisible();
  await signOut(page);

  // A developer sees entries by or about themselves, not the admin's team or others.
  await signIn(page, DEVELOPER, PASSWORD);
  await page.goto('/audit');
  await expect(table.getByText('session.login').first()).toBeVisible();
  await expect(table.getByText('team.create')).toHaveCount(0);
  await expect(table.getByText(AUDITOR)).toHaveCount(0);
  await expect(page.getByTestId('chain-status')).toHaveCount(0);
  await page.goto('/audit?q=Audited+Team');
  await expect(table.locator('tbody tr')).toHaveCount(0);
  expect(problems).toEqual([]);
});
