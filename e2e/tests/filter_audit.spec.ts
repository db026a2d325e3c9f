import { test, expect } from '@playwright/test';
import { ADMIN_EMAIL, signIn, signInAsAdmin, waitForHydration, watchForViolations } from './helpers';

test('the audit view shows who did what, filters, and verifies the chain', async ({ page }) => {
  const problems = watchForViolations(page);
  // A failed sign-in first, so there is a failure to find.
  await signIn(page, ADMIN_EMAIL, 'not the admin password');
  await signInAsAdmin(page);
  await page.goto('/settings/teams');
  await waitForHydration(page);
  await page.getByLabel('Name').fill('Audited Team');
  await page.getByRole('button', { name: 'Create team' }).click();
  await expect(page.getByText('Team created.')).toBeVisible();

  await page.goto('/audit');
  await expect(page.getByTestId('chain-status')).toContainText('Chain intact');
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
  expect(problems).toEqual([]);
});
