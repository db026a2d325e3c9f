// Runs after publish_policy.spec.ts (files run in name order, on one shared server): the
// specs before it expect an inventory without this API.
// The whole loop with real parts: an API registered and protected in the dashboard, a
// bundle published there, a real palisade-agent enrolled with a token made there, in front
// of a real upstream; each publish in the dashboard decides the next requests through it.
import { test, expect, Page } from '@playwright/test';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createTeam, signInAsAdmin, waitForHydration, watchForViolations } from './helpers';

const repo = path.resolve(__dirname, '..', '..');
const AGENT = process.env.PALISADE_AGENT_BIN ??
  path.join(process.env.CARGO_TARGET_DIR ?? path.join(repo, 'target'), 'debug', 'palisade-agent');
const TEAM = 'Loop Team';

/** The upstream: answers every request with a small JSON document naming its path. */
async function startUpstream(): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ served: request.url }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** A port nothing listens on now. */
async function freePort(): Promise<number> {
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** Compiles a draft on the Policies page and publishes it with `reason`; its revision. */
async function publish(page: Page, reason: string): Promise<string> {
  await page.goto('/policies');
  await waitForHydration(page);
  await page.locator('#preview').getByRole('button', { name: 'Compile a signed draft' }).click();
  const revisions = page.getByTestId('bundles');
  const draft = revisions.locator('tbody tr').first();
  await expect(draft).toContainText('draft');
  const revision = (await draft.locator('td').first().textContent())!.trim();
  await draft.getByLabel('Reason').fill(reason);
  await draft.getByRole('button', { name: 'Publish' }).click();
  await expect(revisions.getByRole('row', { name: new RegExp(reason) })).toContainText('active');
  return revision;
}

/** Calls through the agent until the answer's status is `status` (the push takes a moment). */
async function expectThroughAgent(url: string, status: number): Promise<any> {
  let last: { status: number; body: any } = { status: 0, body: null };
  await expect
    .poll(async () => {
      try {
        const response = await fetch(url);
        last = { status: response.status, body: await response.json() };
      } catch {
        last = { status: 0, body: null };
      }
      return last.status;
    }, { timeout: 15_000, intervals: [100] })
    .toBe(status);
  return last.body;
}

test('a publish in the dashboard decides the next request through a real agent in front of a real upstream', async ({ page, baseURL }) => {
  expect(fs.existsSync(AGENT), `${AGENT} is built by the Rust tests (cargo nextest) before this suite`).toBe(true);
  const problems = watchForViolations(page);
  const upstream = await startUpstream();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'palisade-agent-e2e-'));
  let agent: ChildProcess | null = null;
  try {
    await signInAsAdmin(page);
    await createTeam(page, TEAM);

    // Register the API and open it to anyone.
    await page.goto('/apis');
    await waitForHydration(page);
    await page.getByLabel('Team').selectOption({ label: TEAM });
    await page.getByLabel('Environment').fill('loop-e2e');
    await page.getByLabel('OpenAPI document').fill([
      'openapi: 3.0.3',
      'info: {title: Shop, version: "1"}',
      'paths:',
      '  /items/{id}:',
      '    get:',
      '      responses:',
      "        '200': {description: an item}",
    ].join('\n'));
    await page.getByRole('button', { name: 'Import' }).click();
    await expect(page.getByRole('status')).toContainText('Registered Shop with 1 operations.');
    await page.getByRole('status').getByRole('link', { name: 'Shop' }).click();
    await expect(page.getByRole('heading', { name: 'Shop' })).toBeVisible();
    const apiUrl = page.url();
    const apiId = apiUrl.match(/\/apis\/(\d+)/)![1];
    await waitForHydration(page);
    const authentication = page.locator('#authentication');
    await authentication.getByLabel('Mode').selectOption('public');
    await authentication.getByRole('button', { name: 'Save authentication' }).click();
    await expect(authentication.getByText('Authentication saved.')).toBeVisible();
    const first = await publish(page, 'open the shop');

    // An enrollment token from the Agents section, and the agent it starts.
    await page.goto('/agents');
    await waitForHydration(page);
    const enrollment = page.locator('#enrollment');
    await enrollment.getByLabel('Labels').fill('env=loop-e2e');
    await enrollment.getByLabel('Agent name (optional)').fill('shop-edge-1');
    await enrollment.getByRole('button', { name: 'Create enrollment token' }).click();
    const token = (await page.getByTestId('secret').textContent())!;
    const listen = `127.0.0.1:${await freePort()}`;
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    agent = spawn(AGENT, [
      '--control-plane', baseURL!, '--enroll-token', token, '--data-dir', dataDir, '--api', apiId,
      '--listen', listen, '--upstream', upstreamUrl,
    ], { env: { ...process.env, RUST_LOG: 'warn' }, stdio: ['ignore', 'inherit', 'inherit'] });
    const item = `http://${listen}/items/7`;

    // Revision one: open, forwarded to the upstream.
    expect(await expectThroughAgent(item, 200)).toEqual({ served: '/items/7' });
    const undeclared = await expectThroughAgent(`http://${listen}/admin`, 404);
    expect(undeclared.code).toBe('undeclared_route');

    // Revision two, published in the dashboard: only a network this caller is not in.
    await page.goto(apiUrl);
    await waitForHydration(page);
    const document = page.locator('#protection-document');
    await document.getByLabel('Document').fill(JSON.stringify({
      authentication: { mode: 'public' },
      network: { source_networks: ['192.0.2.0/24'] },
    }));
    await document.getByRole('button', { name: 'Save document' }).click();
    await expect(document.getByText('Protection saved.')).toBeVisible();
    const second = await publish(page, 'only the partner network');
    expect(Number(second)).toBeGreaterThan(Number(first));
    const refused = await expectThroughAgent(item, 403);
    expect(refused.code).toBe('source_not_allowed');
    expect(JSON.stringify(refused)).not.toContain('192.0.2.0');

    // Revision three: the API in monitor mode, set with the Enforcement form. The same
    // request is let through and recorded as what would have been refused.
    await page.goto(apiUrl);
    await waitForHydration(page);
    const enforcement = page.locator('#enforcement');
    await enforcement.getByLabel('Mode').selectOption('monitor');
    await enforcement.getByRole('button', { name: 'Save enforcement' }).click();
    await expect(enforcement.getByText('Enforcement saved.')).toBeVisible();
    await expect(page.getByTestId('protection')).toContainText('monitor: agents record what they would refuse');
    await publish(page, 'watch before enforcing');
    expect(await expectThroughAgent(item, 200)).toEqual({ served: '/items/7' });

    // The fleet shows the agent, with its labels, running what is meant for it.
    await page.goto('/agents');
    await waitForHydration(page);
    const row = page.getByTestId('fleet').getByRole('row', { name: /shop-edge-1/ });
    await expect(row).toContainText('env=loop-e2e');
    expect(problems).toEqual([]);
  } finally {
    // Stopped before its data directory goes: it seals its decision spool on the way out.
    if (agent && agent.exitCode === null) {
      const exited = new Promise((resolve) => agent!.once('exit', resolve));
      agent.kill('SIGTERM');
      await exited;
    }
    upstream.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
