import { test, expect } from '@playwright/test';
import { createTeam, createUser, signIn, signInAsAdmin, signOut, waitForHydration, watchForViolations } from './helpers';

const SECURITY = 'ciso.policy.e2e@example.com';
const DEVELOPER = 'developer.policy.e2e@example.com';
const PASSWORD = 'policy e2e password 1';

test('a security user previews, publishes with a reason, rolls back, runs a canary and pins a group; a developer cannot publish', async ({ page }) => {
  const problems = watchForViolations(page);
  await signInAsAdmin(page);
  await createTeam(page, 'Policy Team');
  await createUser(page, SECURITY, 'security', null, PASSWORD);
  await createUser(page, DEVELOPER, 'developer', 'Policy Team', PASSWORD);
  // Something to compile: an API of the team's.
  await page.goto('/apis');
  await waitForHydration(page);
  await page.getByLabel('Team').selectOption({ label: 'Policy Team' });
  await page.getByLabel('Environment').fill('policy-e2e');
  await page.getByLabel('OpenAPI document').fill([
    'openapi: 3.0.3',
    'info: {title: Ledger, version: "1"}',
    'paths:',
    '  /entries/{id}:',
    '    get:',
    '      responses:',
    "        '200': {description: an entry}",
  ].join('\n'));
  await page.getByRole('button', { name: 'Import' }).click();
  await expect(page.getByRole('status')).toContainText('Registered Ledger with 1 operations.');
  await signOut(page);

  await signIn(page, SECURITY, PASSWORD);
  await page.goto('/policies');
  await waitForHydration(page);
  const diff = page.getByTestId('policy-diff');
  await expect(diff).toContainText('GET /entries/{id} in Ledger');
  await page.getByRole('button', { name: 'Compile a signed draft' }).click();
  await expect(page.getByText('Draft compiled and signed.')).toBeVisible();
  const revisions = page.getByTestId('bundles');
  const first = revisions.locator('tbody tr').first();
  await expect(first).toContainText('draft');
  const firstRevision = (await first.locator('td').first().textContent())!.trim();
  await first.getByLabel('Reason').fill('first policy for the ledger');
  await first.getByRole('button', { name: 'Publish' }).click();
  await expect(revisions.getByRole('row', { name: /first policy for the ledger/ })).toContainText('active');
  await expect(diff).toContainText('no change');

  // A second revision, then back to the first: a new revision re-issuing it.
  await page.getByRole('button', { name: 'Compile a signed draft' }).click();
  await expect(revisions.locator('tbody tr').first()).toContainText('draft');
  await revisions.locator('tbody tr').first().getByLabel('Reason').fill('second revision');
  await revisions.locator('tbody tr').first().getByRole('button', { name: 'Publish' }).click();
  await expect(revisions.getByRole('row', { name: /second revision/ })).toContainText('active');
  const older = revisions.getByRole('row', { name: /first policy for the ledger/ });
  await older.getByLabel('Reason').fill('back to the first');
  await older.getByRole('button', { name: 'Roll back to this' }).click();
  const newest = revisions.locator('tbody tr').first();
  await expect(newest).toContainText(`(rollback to ${firstRevision})`);
  await expect(newest).toContainText('active');
  await expect(newest).toContainText('back to the first');

  // A canary: a draft for the agents labelled env=canary, published to them, promoted.
  const preview = page.locator('#preview');
  await preview.getByLabel('Target labels').fill('env=canary');
  await preview.getByRole('button', { name: 'Compile a signed draft' }).click();
  const canary = revisions.locator('tbody tr').first();
  await expect(canary).toContainText('env=canary');
  const canaryRevision = (await canary.locator('td').first().textContent())!.trim();
  await canary.getByLabel('Reason').fill('try it on the canaries');
  await canary.getByRole('button', { name: 'Publish to the canary' }).click();
  const published = revisions.getByRole('row', { name: /try it on the canaries/ });
  await expect(published).toContainText('published');
  await published.getByLabel('Reason').first().fill('canaries are healthy');
  await published.getByRole('button', { name: 'Promote to every agent' }).click();
  const promoted = revisions.locator('tbody tr').first();
  await expect(promoted).toContainText(`(promotes ${canaryRevision})`);
  await expect(promoted).toContainText('every agent');
  await expect(promoted).toContainText('active');

  // A pin holds the EU agents on the first revision; releasing it lets them follow.
  const pins = page.locator('#pins');
  await pins.getByLabel('Label group').fill('region=eu');
  await pins.getByLabel('Revision').fill(firstRevision);
  await pins.getByLabel('Reason').fill('EU audit freeze');
  await pins.getByRole('button', { name: 'Pin' }).click();
  await expect(page.getByText('Group pinned.')).toBeVisible();
  const pinRow = page.getByTestId('pins').getByRole('row', { name: /EU audit freeze/ });
  await expect(pinRow).toContainText('region=eu');
  await expect(pinRow).toContainText(`the policy of ${firstRevision}`);
  await expect(revisions.locator('tbody tr').first()).toContainText(`(pins ${firstRevision})`);
  await pinRow.getByLabel('Reason').fill('freeze over');
  await pinRow.getByRole('button', { name: 'Release' }).click();
  await expect(pins).toContainText('No pins');

  // The decision explorer: the Ledger declares no authentication, so a call is denied
  // (fail closed), and the result's address is a shareable link to the case.
  const explorer = page.locator('#explorer');
  await explorer.getByRole('combobox', { name: 'API', exact: true }).selectOption({ label: 'Ledger (policy-e2e)' });
  await explorer.getByLabel('Path').fill('/entries/7');
  await explorer.getByRole('button', { name: 'Decide' }).click();
  await expect(page.getByTestId('decision')).toContainText('Denied (401)');
  await expect(page.getByTestId('decision')).toContainText('authentication_undeclared');
  await expect(page.getByTestId('trace')).toContainText('GET /entries/{id} in Ledger');
  expect(page.url()).toContain('path=%2Fentries%2F7');
  const shared = page.url();
  await page.goto(shared);
  // A reload: the forms below must not be filled before hydration, which would reset them.
  await waitForHydration(page);
  await expect(page.getByTestId('decision')).toContainText('authentication_undeclared');
  await explorer.getByLabel('Path').fill('/entries//7');
  await explorer.getByRole('button', { name: 'Decide' }).click();
  await expect(page.getByTestId('decision')).toContainText('non_canonical_path');

  // Policy tests: the same case files `palisade policy test` runs, against the draft.
  const cases = page.locator('#cases');
  await cases.getByLabel('Test file').fill(JSON.stringify({ cases: [
    { name: 'undeclared authentication fails closed', api: 'Ledger', environment: 'policy-e2e',
      request: { method: 'GET', path: '/entries/7' }, expect: { allow: false, status: 401 } },
    { name: 'a wrong expectation', api: 'Ledger', environment: 'policy-e2e',
      request: { method: 'GET', path: '/entries/7' }, expect: { allow: true } },
  ] }));
  await cases.getByRole('button', { name: 'Run the cases' }).click();
  const results = page.getByTestId('case-results');
  await expect(results).toContainText('1 passed, 1 failed');
  await expect(results.getByRole('row', { name: /a wrong expectation/ })).toContainText('expected allow');
  await signOut(page);

  // A developer sees the history but has no way to publish.
  await signIn(page, DEVELOPER, PASSWORD);
  await page.goto('/policies');
  await expect(page.getByTestId('bundles')).toContainText('back to the first');
  await expect(page.getByRole('button', { name: 'Compile a signed draft' })).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Publish' })).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Roll back to this' })).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Promote to every agent' })).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Pin' })).toHaveCount(0);
  expect(problems).toEqual([]);
});
