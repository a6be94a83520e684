// The /account page in a real browser (headless Chromium, as the consent
// test drives it) and the operators' `mcpgate sessions` commands (issue 13).
// Alice connects two applications through the real flow, opens a session
// with one of them, signs in to /account, sees both cards, disconnects one:
// its access and refresh tokens are refused, its GET stream ends and its
// child goes, while the other keeps working. Bob never sees Alice's grants;
// a forged or replayed form is refused. Screenshots go to tests/e2e/artifacts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { freePort, runCli, startGateway, teardownAll, waitFor } from '../lib/harness.mjs';
import { childPids, initializeMessage, mcpPost, mcpRequest } from '../lib/mcp.mjs';
import {
  USERS, callRoute, http, obtainTokens, refresh, startOAuthStack, waitRefused,
} from '../lib/oauth.mjs';
import { ARTIFACTS, launchChromium } from './lib_browser.mjs';

/** Opens a Streamable session on the whoami route with TOKEN and a GET stream on it. */
async function openSession(stack, token) {
  const headers = { authorization: `Bearer ${token}` };
  const init = await mcpPost(stack.port, '/mcp/whoami', initializeMessage(1), { headers });
  assert.equal(init.status, 200, init.text);
  const session = init.headers['mcp-session-id'];
  const o = { headers, session, protocolVersion: '2025-11-25' };
  assert.equal((await mcpPost(stack.port, '/mcp/whoami', { jsonrpc: '2.0', method: 'notifications/initialized' }, o)).status, 202);
  const get = await mcpRequest({ port: stack.port, path: '/mcp/whoami', method: 'GET', ...o });
  assert.equal(get.status, 200);
  return { session, get };
}

/** Signs USER in to /account in a new browser context; returns the page. */
async function signIn(browser, stack, user) {
  const context = await browser.newContext({ viewport: { width: 820, height: 1100 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await Promise.all([page.waitForURL((u) => u.origin === stack.idp.origin), page.goto(`${stack.url}/account`)]);
  await page.waitForSelector('#username');
  await page.fill('#username', user);
  await page.fill('#password', USERS[user].password);
  await Promise.all([page.waitForURL((u) => u.href === `${stack.url}/account`), page.click('#sign-in')]);
  assert.equal(await page.title(), 'Connected applications');
  return page;
}

describe('/account: a person sees and disconnects the applications they connected', () => {
  let stack;
  let browser;
  let a1;
  let a2;
  let b1;
  const cli = (...args) => runCli([...args, '-c', stack.gw.configPath], { timeoutMs: 20000 });

  before(async () => {
    browser = await launchChromium();
    stack = await startOAuthStack();
    a1 = await obtainTokens(stack, { user: 'alice', clientOpts: { name: 'Alice Notes' } });
    a2 = await obtainTokens(stack, { user: 'alice', clientOpts: { name: 'Alice Mail' } });
    b1 = await obtainTokens(stack, { user: 'bob', clientOpts: { name: 'Bob Tools' } });
  });
  after(async () => {
    await browser?.close().catch(() => {});
    if (stack && !stack.gw.exited) assert.equal(await stack.gw.stop(), 0, 'gateway exit status (ASan clean)');
    await teardownAll();
  });

  test('alice sees both cards with their session count; disconnecting one ends its tokens, stream and child, the other works', async (t) => {
    const open = await openSession(stack, a1.tokens.access_token);
    const kids = childPids(stack.gw.pid);
    assert.equal(kids.length, 1, 'one child for the session');
    const page = await signIn(browser, stack, 'alice');
    const names = (await page.locator('.card h2.app').allTextContents()).map((x) => x.trim()).sort();
    assert.deepEqual(names, ['Alice Mail', 'Alice Notes']);
    assert.equal((await page.textContent('#who')).trim(), USERS.alice.name ?? 'alice');
    const card = page.locator('.card', { hasText: 'Alice Notes' });
    assert.equal((await card.locator('.sessions').textContent()).trim(), '1');
    assert.match(await card.textContent(), /Self-registered/);
    assert.match(await card.textContent(), /127\.0\.0\.1/);
    assert.match(await card.textContent(), /last used \d{4}-\d\d-\d\d/);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'account.png'), fullPage: true });
    t.diagnostic(`screenshot: ${path.join(ARTIFACTS, 'account.png')}`);

    await Promise.all([page.waitForLoadState('load'), card.locator('button', { hasText: 'Disconnect' }).click()]);
    await page.waitForFunction(() => document.querySelectorAll('.card').length === 1);
    assert.deepEqual((await page.locator('.card h2.app').allTextContents()).map((x) => x.trim()), ['Alice Mail']);
    await page.screenshot({ path: path.join(ARTIFACTS, 'account-after.png'), fullPage: true });

    const refused = await waitRefused(stack.url, '/mcp/whoami', a1.tokens.access_token);
    assert.equal(refused.status, 401, 'the access token is refused');
    const r = await refresh(stack.url, a1.client, a1.tokens.refresh_token);
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_grant');
    await open.get.sse.waitEnd(5000);
    await waitFor(() => childPids(stack.gw.pid).length === 0, { timeoutMs: 5000, what: 'the child to go' });
    const other = await callRoute(stack.url, '/mcp/whoami', a2.tokens.access_token);
    assert.equal(other.status, 200, 'the other application still works');
    const audit = stack.gw.logs().filter((l) => l.module === 'audit' && l.msg === 'grant disconnected');
    assert.equal(audit.length, 1);
    assert.equal(audit[0].subject, USERS.alice.sub);
    assert.match(audit[0].by, /the person/);
    await page.context().close();
  });

  test('bob sees only his own application', async () => {
    const page = await signIn(browser, stack, 'bob');
    assert.deepEqual((await page.locator('.card h2.app').allTextContents()).map((x) => x.trim()), ['Bob Tools']);
    assert.ok(!(await page.textContent('main')).includes('Alice'));
    await page.context().close();
  });

  test('a forged form, a grant of someone else, and a replay after sign-out are refused', async () => {
    const page = await signIn(browser, stack, 'alice');
    const cookies = await page.context().cookies();
    const jar = cookies.map((c) => `${c.name}=${c.value}`).join('; ');
    const csrf = await page.locator('input[name=csrf]').first().getAttribute('value');
    const post = (fields, cookie = jar) => http(`${stack.url}/account`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', cookie }, body: new URLSearchParams(fields).toString(),
    });
    const grantOf = async (who) => (await cli('grants', 'list', '--user', USERS[who].sub)).stdout.trim().split('\n').slice(1).map((l) => l.split('\t')[0]);
    const [bobGrant] = await grantOf('bob');
    assert.equal((await post({ csrf: 'x'.repeat(43), action: 'disconnect_all' })).status, 403, 'a wrong CSRF token');
    assert.equal((await post({ csrf, action: 'disconnect_all' }, '')).status, 403, 'no session cookie');
    const foreign = await post({ csrf, action: 'disconnect', grant: bobGrant });
    assert.equal(foreign.status, 404, "bob's grant is not alice's to disconnect");
    assert.equal((await callRoute(stack.url, '/mcp/whoami', b1.tokens.access_token)).status, 200, "bob's grant survived");
    const [aliceGrant] = await grantOf('alice');
    assert.equal((await post({ csrf, action: 'signout' })).status, 200);
    const replay = await post({ csrf, action: 'disconnect', grant: aliceGrant });
    assert.equal(replay.status, 403, 'a replayed form after sign-out');
    assert.equal((await callRoute(stack.url, '/mcp/whoami', a2.tokens.access_token)).status, 200, 'nothing was disconnected');
    await page.context().close();
  });

  test('operators: sessions list shows the live session, sessions end ends it; grants list has last use and sessions', async () => {
    const open = await openSession(stack, a2.tokens.access_token);
    const list = await cli('sessions', 'list', '--user', USERS.alice.sub);
    assert.equal(list.code, 0, list.stderr);
    const rows = list.stdout.trim().split('\n');
    assert.equal(rows[0], 'SESSION\tUSER\tCLIENT\tROUTE\tINSTANCE\tAGE\tIDLE\tPID\tSTREAMS');
    const row = rows.slice(1).map((l) => l.split('\t')).find((r) => r[0] === open.session.slice(0, 12));
    assert.ok(row, `the session is listed:\n${list.stdout}`);
    assert.equal(row[8], '1', 'its GET stream');
    assert.equal(row[1], USERS.alice.sub);
    assert.equal(row[2], a2.client.client_id);
    assert.equal(row[3], 'whoami');
    assert.ok(Number(row[7]) > 0, 'a child pid');
    const grants = await cli('grants', 'list', '--user', USERS.alice.sub);
    const g = grants.stdout.trim().split('\n');
    assert.equal(g[0], 'GRANT\tSUBJECT\tCLIENT\tSCOPE\tCREATED\tLAST_USED\tSESSIONS');
    const mine = g.slice(1).map((l) => l.split('\t')).find((r) => r[2] === a2.client.client_id);
    assert.ok(Number(mine[6]) >= 1, `its open sessions: ${g.join('\n')}`);
    assert.notEqual(mine[5], 'never');
    assert.equal((await cli('sessions', 'list', '--route', 'other')).stdout.trim().split('\n').length, 1, 'the route filter');
    const end = await cli('sessions', 'end', open.session.slice(0, 16));
    assert.equal(end.code, 0, end.stderr);
    assert.match(end.stdout, /session ended/);
    await open.get.sse.waitEnd(5000);
    const pid = Number(row[7]);
    await waitFor(() => !childPids(stack.gw.pid).includes(pid), { timeoutMs: 5000, what: 'its child to go' });
    assert.ok(stack.gw.logs().some((l) => l.module === 'audit' && l.msg === 'session ended by an operator'));
    const gone = await cli('sessions', 'end', open.session);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /no such session/);
    assert.equal((await cli('sessions', 'end', 'short')).code, 1);
    assert.equal((await cli('sessions', 'bogus')).code, 2);
  });

  test('across instances: a session on a second instance is listed and ended from the CLI, and a disconnect at /account ends it too', async () => {
    const port2 = await freePort();
    const text = fs.readFileSync(stack.gw.configPath, 'utf8').replaceAll(`127.0.0.1:${stack.port}`, `127.0.0.1:${port2}`);
    const gw2 = await startGateway({ port: port2, config: text });
    const other = { ...stack, port: port2, url: gw2.url };
    const open = await openSession(other, a2.tokens.access_token);
    const list = await cli('sessions', 'list', '--user', USERS.alice.sub);
    const row = list.stdout.trim().split('\n').slice(1).map((l) => l.split('\t')).find((r) => r[0] === open.session.slice(0, 12));
    assert.ok(row, list.stdout);
    assert.match(row[4], new RegExp(`:${gw2.pid}$`), 'the instance that has it');
    const end = await cli('sessions', 'end', open.session);
    assert.equal(end.code, 0, end.stderr);
    await open.get.sse.waitEnd(5000);
    assert.ok(gw2.logs().some((l) => l.module === 'audit' && l.msg === 'session ended by an operator'));
    // A disconnect at instance 1's /account ends what instance 2 holds.
    const again = await openSession(other, a2.tokens.access_token);
    const page = await signIn(browser, stack, 'alice');
    const card = page.locator('.card', { hasText: 'Alice Mail' });
    await Promise.all([page.waitForLoadState('load'), card.locator('button', { hasText: 'Disconnect' }).click()]);
    await page.waitForFunction(() => document.querySelectorAll('.card').length === 0);
    assert.ok(await page.isVisible('#none'));
    await again.get.sse.waitEnd(5000);
    const refused = await waitRefused(gw2.url, '/mcp/whoami', a2.tokens.access_token);
    assert.equal(refused.status, 401, 'refused on the other instance too');
    await page.context().close();
    assert.equal(await gw2.stop(), 0);
  });
});
