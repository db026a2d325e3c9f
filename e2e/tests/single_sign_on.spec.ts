// Single sign-on through a real OpenID provider run locally (npm oidc-provider, see
// e2e/oidc/provider.mjs): an admin configures it in the dashboard; a user whose groups
// map to a role signs in through the provider's own pages and lands with that role; a
// user whose groups map to none is refused with a clear message; sign-out ends the
// provider's session too.
import { test, expect, Browser, Page } from '@playwright/test';
import { signInAsAdmin, waitForHydration, watchForViolations } from './helpers';

const OIDC_PORT = Number(process.env.PALISADE_E2E_PORT ?? 3107) + 13;
const ISSUER = `http://127.0.0.1:${OIDC_PORT}`;

/** Through the provider's sign-in and consent pages, as `login` (any password works). */
async function signInAtProvider(page: Page, login: string) {
  await page.goto('/login');
  await page.getByTestId('sso-button').filter({ hasText: 'Corp IdP' }).click();
  await expect(page).toHaveURL(new RegExp(`^${ISSUER}/`));
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('anything');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.getByRole('button', { name: 'Continue' }).click();
}

async function freshPage(browser: Browser): Promise<Page> {
  const context = await browser.newContext();
  return context.newPage();
}

test('sign in through the organisation\'s OpenID provider, with the role its groups map to', async ({ page, browser }) => {
  const problems = watchForViolations(page);
  await signInAsAdmin(page);
  await page.goto('/settings/sso');
  await waitForHydration(page);
  await page.getByLabel('Name in URLs').fill('corp');
  await page.getByLabel('Button label').fill('Corp IdP');
  await page.getByLabel('Issuer URL').fill(ISSUER);
  await page.getByLabel('Client id').fill('palisade-e2e');
  await page.getByLabel('Client secret').fill('e2e-client-secret-0123456789');
  await page.getByLabel('Scopes besides openid').fill('email profile groups');
  await page.getByLabel(/^Role mapping/).fill('palisade-security = security');
  await page.getByRole('button', { name: 'Add provider' }).click();
  await expect(page.getByText('Provider saved.')).toBeVisible();
  const card = page.getByTestId('provider-corp');
  await expect(card.getByTestId('callback-url')).toHaveText(/\/auth\/oidc\/corp\/callback$/);
  expect(await page.content()).not.toContain('e2e-client-secret-0123456789');

  // Casey is in palisade-security: signed in as Security, back on the dashboard.
  const casey = await freshPage(browser);
  const caseyProblems = watchForViolations(casey);
  await signInAtProvider(casey, 'casey');
  await expect(casey.getByRole('heading', { name: 'Overview' })).toBeVisible();
  await expect(casey.getByTestId('whoami')).toHaveText('Casey Security');
  await expect(casey.locator('.whoami .role')).toHaveText('Security');

  // Sign-out ends Palisade's session and goes on to end the provider's.
  await casey.getByRole('button', { name: 'Sign out' }).click();
  await casey.getByRole('button', { name: 'Yes, sign me out' }).click();
  await expect(casey).toHaveURL(/\/login\?notice=signed-out/);
  await expect(casey.getByText('You have signed out.')).toBeVisible();
  await casey.goto('/');
  await expect(casey).toHaveURL(/\/login\?next=/);
  // The provider's session is over too: signing in asks for the login again.
  await casey.getByTestId('sso-button').click();
  await expect(casey.locator('input[name="login"]')).toBeVisible();

  // Mallory's groups map to no role: refused, with a clear message, and no session.
  const mallory = await freshPage(browser);
  await signInAtProvider(mallory, 'mallory');
  await expect(mallory).toHaveURL(/\/login\?error=sso-no-role/);
  await expect(mallory.getByTestId('login-error')).toContainText('none of your groups gives access to Palisade');
  await mallory.goto('/');
  await expect(mallory).toHaveURL(/\/login\?next=/);

  // The admin sees the account the first sign-in created, with its mapped role.
  await page.goto('/settings/users');
  await expect(page.getByRole('row', { name: /casey@idp\.example/ })).toContainText('Security');
  await expect(page.getByRole('row', { name: /mallory@idp\.example/ })).toHaveCount(0);
  // Its page shows how it signs in.
  await page.getByRole('link', { name: 'casey@idp.example' }).click();
  await expect(page.getByTestId('identities')).toContainText('Corp IdP');
  await expect(page.getByTestId('identities')).toContainText('casey');
  expect(problems).toEqual([]);
  expect(caseyProblems).toEqual([]);
});
