// Shared steps: signing in and out through the real form, and watching for CSP violations.
import { expect, Page } from '@playwright/test';
import { createHmac } from 'node:crypto';

export const ADMIN_EMAIL = 'admin@localhost';
export const ADMIN_PASSWORD = 'e2e admin password 1';

export async function signIn(page: Page, email: string, password: string) {
  await page.goto('/login');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export async function signInAsAdmin(page: Page) {
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
}

export async function signOut(page: Page) {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/login\?notice=signed-out/);
}

/** Fails the test on any Content-Security-Policy violation or page error. */
export function watchForViolations(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content.Security.Policy|Refused to/i.test(message.text())) {
      problems.push(message.text());
    }
  });
  page.on('pageerror', (error) => problems.push(String(error)));
  return problems;
}

/** Waits until the wasm has hydrated the page (client-side navigation then works). */
export async function waitForHydration(page: Page) {
  await page.locator('body[data-hydrated="true"]').waitFor({ state: 'attached' });
}

/** As an admin: creates a developer of `team` with an initial password. */
export async function createDeveloper(page: Page, email: string, team: string, password: string) {
  await createUser(page, email, 'developer', team, password);
}

/** As an admin: creates a user with a role, in a team or none, with an initial password. */
export async function createUser(page: Page, email: string, role: string, team: string | null, password: string) {
  await page.goto('/settings/users');
  await waitForHydration(page);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Role').selectOption(role);
  if (team !== null) {
    await page.getByLabel('Team').selectOption({ label: team });
  }
  await page.getByLabel(/Initial password/).fill(password);
  await page.getByRole('button', { name: 'Create user' }).click();
  await expect(page.getByText(`${email} created.`)).toBeVisible();
}

/** As an admin: creates a team. */
export async function createTeam(page: Page, name: string) {
  await page.goto('/settings/teams');
  await waitForHydration(page);
  await page.getByLabel('Name').fill(name);
  await page.getByRole('button', { name: 'Create team' }).click();
  await expect(page.getByRole('cell', { name })).toBeVisible();
}

/** RFC 4648 base32 (no padding) to bytes. */
function base32(text: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** RFC 6238 TOTP (SHA-1, six digits, 30 s) at `at` (Unix ms), as an authenticator app computes it. */
export function totp(secret: string, at: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30_000)));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return value.toString().padStart(6, '0');
}
