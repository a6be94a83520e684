// A real browser (headless Chromium, Debian's package, driven by
// playwright-core) through mcpgate's consent page and the IdP's login form to
// the client's redirect URI: what a person sees and clicks. A screenshot of
// the consent page goes to tests/e2e/artifacts/consent.png.
//
// Chromium missing or not launching is a FAILURE with a clear message, never
// a silent skip.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { freePort } from '../lib/harness.mjs';
import {
  assertNoSecretsInLog, authorizeUrl, exchangeCode, makePkce, newClient, startOAuthStack,
} from '../lib/oauth.mjs';
import { ARTIFACTS, launchChromium } from './lib_browser.mjs';

/** The client's redirect URI: a tiny server that records each request's query. */
async function startRedirectServer() {
  const hits = [];
  const waiters = [];
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://127.0.0.1');
    if (u.pathname !== '/cb') { // e.g. /favicon.ico
      res.writeHead(404).end();
      return;
    }
    hits.push(u);
    for (const w of waiters.splice(0)) w(u);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Browser Test App</title><h1 id="done">Signed in</h1>');
  });
  const port = await freePort();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', resolve);
  });
  return {
    port,
    hits,
    next: () => new Promise((resolve) => waiters.push(resolve)),
    close: () => new Promise((resolve) => {
      srv.closeAllConnections?.();
      srv.close(() => resolve());
    }),
  };
}

describe('consent in a real browser (headless Chromium)', () => {
  let s;
  let cb;
  let browser;

  before(async () => {
    s = await startOAuthStack();
    cb = await startRedirectServer();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await cb?.close().catch(() => {});
    if (s && !s.gw.exited) await s.gw.stop().catch(() => {});
  });

  test('Chromium opens /authorize, shows the consent page, approves, logs in as alice, reaches the client with code and state', async (t) => {
    browser = await launchChromium();

    const redirectUri = `http://127.0.0.1:${cb.port}/cb`;
    const client = await newClient(s.url, { redirectUri, name: 'Browser Test App' });
    const pkce = makePkce();
    const state = 'browser-state-42';
    const url = authorizeUrl(s.url, client, { pkce, state, resource: s.routeUrl('/mcp/whoami') });

    const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    const resp = await page.goto(url);
    assert.equal(resp.status(), 200);
    assert.equal(await page.title(), 'Authorize application');
    assert.equal((await page.textContent('#client-name')).trim(), 'Browser Test App');
    assert.equal((await page.textContent('#redirect-host')).trim(), `127.0.0.1:${cb.port}`);
    assert.match(await page.textContent('main'), /mcp:tools/);
    assert.ok(await page.isVisible('#approve'));
    assert.ok(await page.isVisible('#deny'));

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'consent.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(fs.statSync(shot).size > 1000, 'screenshot written');
    t.diagnostic(`screenshot: ${shot}`);

    await Promise.all([page.waitForURL((u) => u.origin === s.idp.origin), page.click('#approve')]);
    await page.waitForSelector('#username');
    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice-pass');
    const arrived = cb.next();
    await Promise.all([page.waitForURL((u) => u.href.startsWith(redirectUri)), page.click('#sign-in')]);
    const hit = await arrived;
    assert.equal(await page.textContent('#done'), 'Signed in');

    assert.equal(hit.pathname, '/cb');
    assert.equal(hit.searchParams.get('error'), null, `error at the client: ${hit.search}`);
    assert.match(hit.searchParams.get('code') || '', /^mcpgate_ac_[A-Za-z0-9_-]{43}$/);
    assert.equal(hit.searchParams.get('state'), state);
    assert.equal(hit.searchParams.get('iss'), s.url);
    assert.equal(cb.hits.length, 1, 'the client was reached exactly once');

    // The code the browser brought back is good for tokens.
    const tok = await exchangeCode(s.url, client, { params: hit.searchParams, pkce });
    assert.equal(tok.status, 200, tok.text);
    assert.match(tok.json.access_token, /^mcpgate_at_/);
    await context.close();
  });

  test('gateway: exit 0 on SIGTERM, no sanitizer report, no secrets in its log', async () => {
    const rc = await s.gw.stop();
    assert.equal(rc, 0, `exit status ${rc}`);
    assertNoSecretsInLog(s.gw.stderr());
  });
});
