import { test, expect } from '@playwright/test';
import { createUser, signIn, signInAsAdmin, signOut, waitForHydration, watchForViolations } from './helpers';

const SECURITY = 'ciso.agents.e2e@example.com';
const DEVELOPER = 'developer.agents.e2e@example.com';
const PASSWORD = 'agents e2e password 1';
// Tests share one database: labels only this spec uses.
const LABELS = 'env=enroll-e2e, region=eu';

test('a security user creates an enrollment token, sees its secret and command once, and revokes it; a developer sees no enrollment', async ({ page, baseURL }) => {
  const problems = watchForViolations(page);
  await signInAsAdmin(page);
  await createUser(page, SECURITY, 'security', null, PASSWORD);
  await createUser(page, DEVELOPER, 'developer', null, PASSWORD);
  await signOut(page);

  await signIn(page, SECURITY, PASSWORD);
  await page.goto('/agents');
  await waitForHydration(page);
  await expect(page.getByRole('heading', { name: 'Convergence' })).toBeVisible();
  const enrollment = page.locator('#enrollment');
  await enrollment.getByLabel('Labels').fill(LABELS);
  await enrollment.getByLabel('Agent name (optional)').fill('edge-e2e-1');
  await expect(enrollment.getByLabel('Expires after (minutes)')).toHaveValue('60');
  await enrollment.getByLabel('Expires after (minutes)').fill('30');
  await enrollment.getByRole('button', { name: 'Create enrollment token' }).click();

  const secret = (await page.getByTestId('secret').textContent())!;
  expect(secret).toMatch(/^pae_[0-9a-f]+$/);
  await expect(page.getByTestId('command')).toHaveText(
    `palisade-agent --control-plane ${baseURL} --enroll-token ${secret} --data-dir /var/lib/palisade-agent ` +
      '--api <API id> --listen 0.0.0.0:8080 --upstream http://127.0.0.1:9000',
  );
  await expect(page.getByRole('status').filter({ hasText: 'Enrollment token created for env=enroll-e2e, region=eu' })).toContainText(
    'it will not be shown again',
  );

  // Listed as unused, without its secret; shown once: a reload no longer has it.
  const row = page.getByTestId('enrollment-tokens').getByRole('row', { name: /env=enroll-e2e, region=eu/ });
  await expect(row).toContainText('edge-e2e-1');
  await expect(row).toContainText('unused');
  await expect(row).toContainText(SECURITY);
  await page.reload();
  await waitForHydration(page);
  await expect(page.getByTestId('secret')).toHaveCount(0);
  await expect(page.getByText(secret)).toHaveCount(0);
  await expect(row).toContainText('unused');

  await row.getByRole('button', { name: 'Revoke' }).click();
  await expect(row).toContainText('revoked');
  await expect(row.getByRole('button', { name: 'Revoke' })).toHaveCount(0);
  await signOut(page);

  // A developer reads the fleet and convergence, and gets no enrollment or revocation.
  await signIn(page, DEVELOPER, PASSWORD);
  await page.goto('/agents');
  await waitForHydration(page);
  await expect(page.getByRole('heading', { name: 'Agents', exact: true })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'Convergence' })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'Enrollment' })).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Create enrollment token' })).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Revoke' })).toHaveCount(0);
  await expect(page.getByText('env=enroll-e2e')).toHaveCount(0);
  expect(problems).toEqual([]);
});
