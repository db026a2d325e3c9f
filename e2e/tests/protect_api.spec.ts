import { test, expect, Page } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';
import { createDeveloper, createTeam, signIn, signInAsAdmin, signOut, waitForHydration, watchForViolations } from './helpers';

const DEVELOPER = 'developer.protect.e2e@example.com';
const PASSWORD = 'protect e2e password 1';
const TEAM = 'Protect Team';
const PETSTORE = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'shared', 'fixtures', 'openapi', 'petstore-expanded.yaml'), 'utf8');

/** This team's Petstore row on the Overview: its score. */
async function overviewScore(page: Page): Promise<number> {
  await page.goto('/');
  const row = page.getByTestId('estate').getByRole('row', { name: new RegExp(`Swagger Petstore ${TEAM}`) });
  await expect(row).toBeVisible();
  return Number((await row.locator('td').nth(2).textContent())!.trim());
}

test('a developer imports the petstore, corrects a data class, sets JWT authentication, an L3 rule and a request contract, and the posture follows', async ({ page }) => {
  const problems = watchForViolations(page);
  await signInAsAdmin(page);
  await createTeam(page, TEAM);
  await createDeveloper(page, DEVELOPER, TEAM, PASSWORD);
  await signOut(page);
  await signIn(page, DEVELOPER, PASSWORD);

  // The caller that will be granted data: a client application with a key per instance.
  await page.goto('/clients');
  await waitForHydration(page);
  await page.getByLabel('Team').selectOption({ label: TEAM });
  await page.getByLabel('Name').fill('Pet Portal');
  await page.getByLabel('Type').selectOption('web');
  await page.getByRole('button', { name: 'Register client application' }).click();
  await expect(page.getByText('Client application registered.')).toBeVisible();
  const portal = page.getByTestId('client-app').filter({ has: page.getByRole('heading', { name: 'Pet Portal' }) });
  await portal.getByLabel('Instance').fill('portal-eu-1');
  await portal.getByRole('button', { name: 'Issue credential' }).click();
  await expect(page.getByTestId('secret')).toContainText('pak_');
  const key = (await page.getByTestId('secret').textContent())!;
  await expect(portal.getByTestId('credentials')).toContainText('portal-eu-1');
  await expect(portal.getByTestId('credentials')).not.toContainText(key);
  // An HMAC signing key for another instance: shown once, with the key id callers send.
  await portal.getByLabel('Credential').selectOption('hmac');
  await portal.getByLabel('Instance').fill('portal-eu-2');
  await portal.getByRole('button', { name: 'Issue credential' }).click();
  await expect(page.getByText(/for portal-eu-2: key id phk_/)).toBeVisible();
  const hmacKey = (await page.getByTestId('secret').textContent())!;
  expect(hmacKey).toMatch(/^[0-9a-f]{64}$/);
  await expect(portal.getByTestId('credentials')).toContainText('key id phk_');
  await expect(portal.getByTestId('credentials')).not.toContainText(hmacKey);

  // Import the fixture as it is.
  await page.goto('/apis');
  await waitForHydration(page);
  await page.getByLabel('Environment').fill('protect-e2e');
  await page.getByLabel('OpenAPI document').fill(PETSTORE);
  await page.getByRole('button', { name: 'Import' }).click();
  await expect(page.getByRole('status')).toContainText('Registered Swagger Petstore with 4 operations.');
  await page.getByRole('status').getByRole('link', { name: 'Swagger Petstore' }).click();
  await expect(page.getByRole('heading', { name: 'Swagger Petstore' })).toBeVisible();
  const apiUrl = page.url();
  const operations = page.getByTestId('operations');
  await expect(operations.locator('tbody tr')).toHaveCount(4);
  await expect(operations.getByRole('row', { name: /GET \/pets\/\{id\}/ })).toContainText('(document)');

  // The pet's name is a person's name here: the owner says so on the operation.
  await operations.getByRole('row', { name: /GET \/pets\/\{id\}/ }).getByRole('link').click();
  await waitForHydration(page);
  await expect(page.getByRole('heading', { level: 1 })).toContainText('GET /pets/{id}');
  await page.getByLabel('Class').selectOption('person_name');
  await page.getByLabel('Field').fill('200.body.name');
  await page.getByRole('button', { name: 'Add class' }).click();
  await expect(page.getByText('Data classes saved.')).toBeVisible();
  await expect(page.getByTestId('operation-classes')).toContainText('added by the owner');

  // Sensitive data to anyone, with no data rule: both are findings.
  await page.goto(apiUrl);
  await waitForHydration(page);
  const findings = page.getByTestId('findings');
  await expect(findings).toContainText('returns person_name to callers that need no credentials');
  await expect(findings).toContainText('no data (L3) rule');
  await expect(page.getByTestId('api-team')).toHaveText(TEAM);
  const before = await overviewScore(page);

  // JWT authentication: a plain-HTTP issuer is refused with where the problem is.
  await page.goto(apiUrl);
  await waitForHydration(page);
  const authentication = page.locator('#authentication');
  await authentication.getByLabel('Mode').selectOption('required');
  await authentication.getByLabel('Issuer').fill('http://login.example.com');
  await authentication.getByLabel('Audiences').fill('petstore');
  await authentication.getByLabel('JWKS URL').fill('https://login.example.com/.well-known/jwks.json');
  await authentication.getByLabel('Algorithms').fill('RS256, ES256');
  await authentication.getByRole('button', { name: 'Save authentication' }).click();
  await expect(authentication.getByRole('alert')).toContainText('authentication.methods[0].issuer');
  await authentication.getByLabel('Issuer').fill('https://login.example.com');
  await authentication.getByRole('button', { name: 'Save authentication' }).click();
  await expect(authentication.getByText('Authentication saved.')).toBeVisible();
  await expect(page.getByTestId('protection')).toContainText('JWT from https://login.example.com for petstore');
  await expect(findings).not.toContainText('to callers that need no credentials');

  // L3: the portal may receive person names; anything else is masked.
  const data = page.locator('#authorization');
  await data.getByLabel('Client application').selectOption({ label: 'Pet Portal' });
  await data.getByLabel(/Classes it may receive/).fill('person_name');
  await data.getByLabel('Other classes').selectOption('mask');
  await data.getByRole('button', { name: 'Save data rule' }).click();
  await expect(data.getByText('Data rule saved.')).toBeVisible();
  await expect(page.getByTestId('protection')).toContainText('Pet Portal may receive person_name; other classes: mask');
  await expect(findings).not.toContainText('no data (L3) rule');

  // The request contract: a bound that is not a number is refused with what is wrong and
  // changes nothing; then on, with undeclared query parameters let through and a 64 KiB bound.
  const contract = page.locator('#contract');
  const summary = page.getByTestId('protection');
  await expect(summary).toContainText('none: requests are not checked against the OpenAPI description');
  await contract.getByLabel('Contract').selectOption('on');
  await contract.getByLabel(/Largest body/).fill('lots');
  await contract.getByRole('button', { name: 'Save request contract' }).click();
  await expect(contract.getByRole('alert')).toContainText('a whole number of KiB');
  await expect(summary).toContainText('none: requests are not checked against the OpenAPI description');
  await contract.getByLabel(/Largest body/).fill('64');
  await contract.getByLabel(/Refuse query parameters/).uncheck();
  await contract.getByRole('button', { name: 'Save request contract' }).click();
  await expect(contract.getByText('Request contract saved.')).toBeVisible();
  await expect(summary).toContainText('parameters and JSON bodies checked against the OpenAPI description; unknown query parameters let through; bodies up to 64 KiB');
  // Kept: the form shows what was saved after a reload.
  await page.reload();
  await waitForHydration(page);
  await expect(contract.getByLabel('Contract')).toHaveValue('on');
  await expect(contract.getByLabel(/Largest body/)).toHaveValue('64');
  await expect(contract.getByLabel(/Refuse query parameters/)).not.toBeChecked();

  // The Overview's score for this API follows.
  const after = await overviewScore(page);
  expect(after).toBeGreaterThan(before);
  expect(problems).toEqual([]);
});
