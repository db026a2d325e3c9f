import { test, expect } from '@playwright/test';
import { signIn, signInAsAdmin, signOut, waitForHydration, watchForViolations } from './helpers';

const DEVELOPER = 'dev.e2e@example.com';
const DEVELOPER_PASSWORD = 'developer password 1';

test('an admin creates a developer, who then signs in and is refused user admin', async ({ page }) => {
  const problems = watchForViolations(page);
  await signInAsAdmin(page);
  await page.goto('/settings/teams');
  await waitForHydration(page);
  await page.getByLabel('Name').fill('Payments');
  await page.getByRole('button', { name: 'Create team' }).click();
  await expect(page.getByText('Team created.')).toBeVisible();
  await expect(page.getByRole('cell', { name: 'Payments' })).toBeVisible();

  await page.goto('/settings/users');
  await waitForHydration(page);
  await page.getByLabel('Email').fill(DEVELOPER);
  await page.getByLabel('Name', { exact: true }).fill('Dev E2E');
  await page.getByLabel('Role').selectOption('developer');
  await page.getByLabel('Team').selectOption({ label: 'Payments' });
  await page.getByLabel(/Initial password/).fill(DEVELOPER_PASSWORD);
  await page.getByRole('button', { name: 'Create user' }).click();
  await expect(page.getByText(`${DEVELOPER} created.`)).toBeVisible();
  await expect(page.getByTestId('users').getByRole('link', { name: DEVELOPER })).toBeVisible();

  // Bad input is refused next to the form and changes nothing.
  await page.getByLabel('Email').fill(DEVELOPER);
  await page.getByLabel(/Initial password/).fill(DEVELOPER_PASSWORD);
  await page.getByRole('button', { name: 'Create user' }).click();
  await expect(page.getByRole('alert')).toContainText('That email is already taken.');
  await signOut(page);

  await signIn(page, DEVELOPER, DEVELOPER_PASSWORD);
  await expect(page.getByTestId('whoami')).toHaveText('Dev E2E');
  await expect(page.getByText('Teams: Payments')).toBeVisible();

  // The page is refused…
  const refused = await page.goto('/settings/users');
  expect(refused!.status()).toBe(403);
  await expect(page.getByRole('heading', { name: 'Not allowed' })).toBeVisible();
  await expect(page.getByText(DEVELOPER)).toHaveCount(0);
  await expect(page.getByRole('link', { name: 'Users' })).toHaveCount(0);

  // …and so is calling its server functions directly with the developer's own session.
  const direct = await page.evaluate(async () => {
    const list = await fetch('/rpc/list_users', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' }, body: '' });
    const create = await fetch('/rpc/create_user', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: 'email=sneaky%40example.com&display_name=&role=admin&team_id=&password=sneaky+password+1' });
    return { list: list.status, listBody: await list.text(), create: create.status };
  });
  expect(direct.list).toBe(403);
  expect(direct.listBody).not.toContain(DEVELOPER);
  expect(direct.create).toBe(403);
  await signOut(page);
  await signIn(page, 'sneaky@example.com', 'sneaky password 1');
  await expect(page.getByTestId('login-error')).toBeVisible();
  expect(problems).toEqual([]);
});
