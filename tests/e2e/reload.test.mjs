// SIGHUP reloads that change what the gateway is wired to (review F16): a
// route moved to another path, the IdP removed, the IdP added back, the IdP
// replaced while a login is half-way. The gateway is the ASan build: the
// old use-after-free (the IdP client kept reading the freed config) would
// abort it, and every step ends with the process still answering and a
// clean exit.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { randomBytes } from 'node:crypto';

import { freePort, startGateway, startRedis, teardownAll, waitFor, writeSecret } from '../lib/harness.mjs';
import {
  DEFAULT_ROUTES, WHOAMI_BIN, callRoute, http, login, newClient, oauthGatewayConfig, obtainTokens, startIdp,
} from '../lib/oauth.mjs';

after(async () => {
  await teardownAll();
});

describe('SIGHUP: routes and the IdP change without a restart (F16)', () => {
  let redis, idp, gw, port, url, base;
  const reloads = () => gw.logs().filter((l) => l.msg === 'configuration reloaded').length;
  const reloadTo = async (text) => {
    const n = reloads();
    gw.writeConfig(text);
    gw.reload();
    await waitFor(() => reloads() > n || gw.logs().some((l) => /reload failed/.test(l.msg)), { what: 'the reload' });
    assert.ok(reloads() > n, `the reload failed:\n${gw.stderr().slice(-2000)}`);
  };
  const ready = () => waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, { timeoutMs: 10000, what: '/readyz 200' });

  before(async () => {
    redis = await startRedis();
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    idp = await startIdp({ gatewayUrl: url });
    base = { port, redisUrl: redis.url, issuer: idp.issuer, prefix: `t${randomBytes(4).toString('hex')}:`, secretFile: writeSecret(Buffer.from(randomBytes(48).toString('base64'))) };
    gw = await startGateway({ port, config: oauthGatewayConfig(base) });
    await ready();
  });
  after(async () => {
    if (gw && !gw.exited) assert.equal(await gw.stop(), 0, 'a clean exit (ASan found nothing)');
  });

  test('a route moved to another path is served there at once; the old path answers 404', async () => {
    const moved = DEFAULT_ROUTES.map((r) => (r.name === 'whoami' ? { ...r, path: '/mcp/moved' } : r));
    await reloadTo(oauthGatewayConfig({ ...base, routes: moved }));
    const fresh = await callRoute(url, '/mcp/moved', null);
    assert.equal(fresh.status, 401, 'the new path is the route, behind its bearer check');
    assert.match(fresh.headers.get('www-authenticate'), /oauth-protected-resource\/mcp\/moved/);
    const prm = await fetch(`${url}/.well-known/oauth-protected-resource/mcp/moved`);
    assert.equal(prm.status, 200);
    assert.equal((await prm.json()).resource, `${url}/mcp/moved`);
    const old = await callRoute(url, '/mcp/whoami', null);
    assert.equal(old.status, 404, `the old path no longer serves the route: ${old.text} ${JSON.stringify(gw.logs().filter((l) => l.path === '/mcp/whoami').slice(-3))}`);
    // And back: the first path works again.
    await reloadTo(oauthGatewayConfig(base));
    assert.equal((await callRoute(url, '/mcp/whoami', null)).status, 401);
    assert.equal((await callRoute(url, '/mcp/moved', null)).status, 404);
  });

  test('the IdP removed: a login half-way ends with an error page, nothing reads the old config', async () => {
    const client = await newClient(url, {});
    // A login that has been through the IdP and is on its way back to /callback.
    const half = await login({ url }, { client, stopAt: 'callback' });
    assert.ok(half.url.startsWith(`${url}/callback?`), half.url);

    const noIdp = JSON.parse(oauthGatewayConfig(base));
    delete noIdp.idp;
    noIdp.routes = [{ name: 'open', path: '/mcp/open', auth: 'none', stdio: { command: [WHOAMI_BIN] } }];
    await reloadTo(`${JSON.stringify(noIdp, null, 2)}\n`);
    assert.ok(gw.logs().some((l) => l.msg === 'reload: identity provider removed'));
    assert.equal((await fetch(`${url}/readyz`)).status, 200, 'ready without an IdP');
    assert.equal((await callRoute(url, '/mcp/open', null)).status, 200);
    // The half-way login comes back to /callback: an error, not a crash.
    const back = await http(half.url, { jar: half.jar });
    assert.ok(back.status >= 400 && back.status < 600, `callback answered ${back.status}`);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
  });

  test('the IdP added back: discovery runs, a whole login works', async () => {
    await reloadTo(oauthGatewayConfig(base));
    assert.ok(gw.logs().some((l) => l.msg === 'reload: identity provider added'));
    await ready();
    const { tokens } = await obtainTokens({ url }, {});
    const r = await callRoute(url, '/mcp/whoami', tokens.access_token);
    assert.equal(r.status, 200);
  });

  test('the IdP replaced by another provider: the new one is discovered and logins go there', async () => {
    const second = await startIdp({ gatewayUrl: url });
    assert.notEqual(second.issuer, idp.issuer);
    await reloadTo(oauthGatewayConfig({ ...base, issuer: second.issuer }));
    assert.ok(gw.logs().some((l) => l.msg === 'reload: identity provider replaced'));
    await ready();
    const { flow, tokens } = await obtainTokens({ url }, {});
    assert.ok(flow.steps.some((st) => st.url.startsWith(new URL(second.issuer).origin)), `the login went to the new IdP (${second.issuer}): ${flow.steps.map((st) => st.url).join(' ')}`);
    assert.equal((await callRoute(url, '/mcp/whoami', tokens.access_token)).status, 200);
    // Same provider again with another timeout: the client is kept, nothing re-discovered.
    const n = gw.logs().filter((l) => /identity provider/.test(l.msg)).length;
    await reloadTo(oauthGatewayConfig({ ...base, issuer: second.issuer, idp: { timeout: '4s' } }));
    assert.equal(gw.logs().filter((l) => /identity provider/.test(l.msg)).length, n);
    await second.stop();
  });
});
