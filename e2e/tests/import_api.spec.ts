import { test, expect } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';
import { createDeveloper, createTeam, signIn, signInAsAdmin, signOut, waitForHydration, watchForViolations } from './helpers';

const OWNER = 'owner.inventory.e2e@example.com';
const OUTSIDER = 'outsider.inventory.e2e@example.com';
const PASSWORD = 'inventory e2e password 1';
const PETSTORE = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'openapi', 'petstore-expanded.yaml'), 'utf8');

test('a developer imports an OpenAPI document, sees its operations and re-imports a change', async ({ page }) => {
  const problems = watchForViolations(page);
  await signInAsAdmin(page);
  await createTeam(page, 'Pets Team');
  await createTeam(page, 'Other Team');
  await createDeveloper(page, OWNER, 'Pets Team', PASSWORD);
  await createDeveloper(page, OUTSIDER, 'Other Team', PASSWORD);
  await signOut(page);

  await signIn(page, OWNER, PASSWORD);
  await page.goto('/apis');
  await waitForHydration(page);
  // A broken document is refused next to the form, with where the problem is.
  await page.getByLabel('OpenAPI document').fill(PETSTORE.replace("'#/components/schemas/NewPet'", "'#/components/schemas/Nope'"));
  await page.getByRole('button', { name: 'Import' }).click();
  await expect(page.getByRole('alert')).toContainText('/paths/~1pets/post/requestBody/content/application~1json/schema/$ref');
  await expect(page.getByText('No APIs registered yet')).toBeVisible();

  await page.getByLabel('OpenAPI document').fill(PETSTORE);
  await page.getByRole('button', { name: 'Import' }).click();
  await expect(page.getByRole('status')).toContainText('Registered Swagger Petstore with 4 operations.');
  await expect(page.getByTestId('apis').getByRole('link', { name: 'Swagger Petstore' })).toBeVisible();
  await expect(page.getByTestId('apis').getByRole('row', { name: /Swagger Petstore/ })).toContainText('none found');
  await page.getByTestId('apis').getByRole('link', { name: 'Swagger Petstore' }).click();
  await expect(page.getByRole('heading', { name: 'Swagger Petstore' })).toBeVisible();
  const apiUrl = page.url();
  await expect(page.getByTestId('api-team')).toHaveText('Pets Team');
  const operations = page.getByTestId('operations');
  await expect(operations.locator('tbody tr')).toHaveCount(4);
  await expect(page.getByTestId('score')).toContainText('Score 61 / 100');
  await expect(page.getByTestId('findings')).toContainText('object-level (L2) rule');
  await expect(operations.getByRole('row', { name: /DELETE \/pets\/\{id\} deletePet/ })).toBeVisible();

  // Re-import with one operation removed: the diff is shown and applied.
  await waitForHydration(page);
  const withoutDelete = PETSTORE.replace(/    delete:\n[\s\S]*?(?=components:)/, '');
  await page.getByLabel('OpenAPI document').fill(withoutDelete);
  await page.getByRole('button', { name: 'Re-import' }).click();
  await expect(page.getByTestId('diff')).toContainText('Removed (1)');
  await expect(page.getByTestId('diff')).toContainText('DELETE /pets/{id}');
  await expect(operations.locator('tbody tr')).toHaveCount(3);
  // A new operation that returns email addresses shows the class where it flows.
  await page.getByLabel('OpenAPI document').fill(withoutDelete.replace('components:', [
    '  /owners:',
    '    get:',
    '      operationId: listOwners',
    '      responses:',
    "        '200':",
    '          description: owners',
    '          content:',
    '            application/json:',
    '              schema:',
    '                properties:',
    '                  contact:',
    '                    type: string',
    '                    format: email',
    'components:'].join('\n')));
  await page.getByRole('button', { name: 'Re-import' }).click();
  await expect(page.getByTestId('diff')).toContainText('Added (1)');
  await expect(operations.getByRole('row', { name: /listOwners/ })).toContainText('email');
  // …to anyone: a high finding, and the Overview's score for the estate drops with it.
  await expect(page.getByTestId('findings').getByRole('row', { name: /GET \/owners.*returns email to callers that need no credentials/ })).toBeVisible();
  await page.goto('/');
  await expect(page.getByTestId('estate-score')).toContainText('Estate score');
  const row = page.getByTestId('estate').getByRole('row', { name: /Swagger Petstore/ });
  await expect(row).toBeVisible();
  const score = Number((await row.locator('td').nth(2).textContent())!.trim());
  expect(score).toBeLessThan(61);

  // Deprecated with a sunset date already past: a lifecycle finding appears.
  await page.goto(apiUrl);
  await waitForHydration(page);
  await page.locator('select[name=lifecycle]').selectOption('deprecated');
  await page.getByLabel('Sunset date (deprecated only)').fill('2020-01-31');
  await page.getByRole('button', { name: 'Save lifecycle' }).click();
  await expect(page.getByText('Lifecycle saved.')).toBeVisible();
  await expect(page.getByTestId('findings')).toContainText('its sunset date has passed but it is not retired');
  await signOut(page);

  // Another team's developer reads the API but gets no way to change it.
  await signIn(page, OUTSIDER, PASSWORD);
  await page.goto(apiUrl);
  await expect(page.getByRole('heading', { name: 'Swagger Petstore' })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Re-import' })).toHaveCount(0);
  expect(problems).toEqual([]);
});
