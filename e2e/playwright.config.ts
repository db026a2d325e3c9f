// Browser tests: Playwright drives Debian's Chromium against a real `palisade serve` with a
// fresh SQLite database. scripts/test builds the binary and the site before this runs.
import { defineConfig } from '@playwright/test';
import * as path from 'node:path';

const port = Number(process.env.PALISADE_E2E_PORT ?? 3107);
const repo = path.resolve(__dirname, '..');
const binary = process.env.PALISADE_BIN ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(repo, 'target'), 'debug', 'palisade');
const dataDir = path.join(__dirname, '.data');
// A second server with the shipped defaults for second factors (required for admins and
// security), for the specs named *.required.spec.ts.
const requiredPort = port + 1;
const requiredDataDir = path.join(__dirname, '.data-required');
// A real OpenID provider (npm oidc-provider) for single_sign_on.spec.ts.
export const OIDC_PORT = port + 13;

function server(listen: number, data: string, env: Record<string, string>) {
  return {
    command: `rm -rf "${data}" && exec "${binary}" serve --listen 127.0.0.1:${listen}`,
    url: `http://127.0.0.1:${listen}/readyz`,
    reuseExistingServer: false,
    timeout: 120_000,
    stdout: 'pipe' as const,
    env: {
      PALISADE_DATA_DIR: data,
      PALISADE_SITE_ROOT: path.join(repo, 'target', 'site'),
      PALISADE_ADMIN_EMAIL: ADMIN_EMAIL,
      PALISADE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      RUST_LOG: 'warn',
      ...env,
    },
  };
}

export const ADMIN_EMAIL = 'admin@localhost';
export const ADMIN_PASSWORD = 'e2e admin password 1';

export default defineConfig({
  testDir: './tests',
  // One server, shared accounts and login throttling: run the files one after another.
  workers: 1,
  fullyParallel: false,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    browserName: 'chromium',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      // This machine has no network: keep Chromium from trying to reach Google.
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    },
  },
  projects: [
    { name: 'dashboard', testIgnore: /\.required\.spec\.ts$/ },
    { name: 'second factor required', testMatch: /\.required\.spec\.ts$/, use: { baseURL: `http://127.0.0.1:${requiredPort}` } },
  ],
  webServer: [
    server(port, dataDir, {
      // Sign audit checkpoints every second, so the Audit view always has a recent one.
      PALISADE_AUDIT_CHECKPOINT_SECONDS: '1',
      // This suite signs in as admin and security with passwords; two_factor.spec.ts and
      // first_admin.required.spec.ts cover second factors and the requirement.
      PALISADE_MFA_REQUIRED_ROLES: 'none',
    }),
    server(requiredPort, requiredDataDir, {}),
    {
      command: 'exec node oidc/provider.mjs',
      url: `http://127.0.0.1:${OIDC_PORT}/.well-known/openid-configuration`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: 'pipe' as const,
      env: { OIDC_PORT: String(OIDC_PORT), PALISADE_ORIGIN: `http://127.0.0.1:${port}` },
    },
  ],
});
