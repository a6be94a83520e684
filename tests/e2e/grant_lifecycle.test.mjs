// How a grant lives and ends under concurrency and offboarding (F6, F7, F20
// and the rate limits of the December review): the user's IdP token renewed
// once for many concurrent requests on two instances; the IdP consulted at
// every refresh when idp.recheck_on_refresh is on (new roles apply, a
// disabled user loses the grant, an IdP outage keeps the refresh token);
// oauth.max_grant_lifetime; the grant's indexes sliding with its refresh
// token; a revocation ending open streams; concurrent code replays; /token
// and /register limits per address (/64 for IPv6).
// Real redis-server, the test IdP (oidc-provider, rotating refresh tokens),
// gateways under ASan, an SDK-built HTTP upstream and the STDIO whoami server.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { freePort, redisCommand, startGateway, startRedis, teardownAll, waitFor, writeSecret } from '../lib/harness.mjs';
import { mcpRequest } from '../lib/mcp.mjs';
import {
  clientMetadata, exchangeCode, login, newClient, oauthGatewayConfig, obtainTokens, refresh, registerClient, revoke,
  startIdp, startOAuthStack, tokenRequest, waitRefused,
} from '../lib/oauth.mjs';
import { mcpPost, rawSession, rpc, startUpstream, stopAll } from './lib_identity.mjs';

after(async () => {
  await stopAll();
  await teardownAll();
});

const knob = async (idp, name, body) => {
  const r = await fetch(`${idp.origin}/__test/${name}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}),
  });
  assert.equal(r.status, 200, `knob ${name}: ${r.status}`);
  return r.json();
};
const tokenPosts = async (idp) => (await knob(idp, 'stats')).tokenPosts;

async function headersSeen(route, token, sid) {
  const r = await mcpPost(route, rpc('tools/call', { name: 'headers', arguments: {} }), { token, sessionId: sid });
  return { status: r.status, text: r.text, headers: r.status === 200 ? JSON.parse(r.response.result.content[0].text) : null };
}

describe('the IdP token is renewed once for concurrent requests, on one instance or two (F6)', () => {
  test('six requests at once inside the renewal margin on two instances: all 200, one IdP call, the grant lives', { timeout: 60000 }, async () => {
    const upstream = await startUpstream();
    const redis = await startRedis();
    const [p1, p2] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${p1}`;
    // 68 s tokens: inside the 60 s renewal margin 8 s after issue (room for a slow sign-in on a
    // loaded machine before the first request); a renewed one stays fresh 8 s.
    const idp = await startIdp({ gatewayUrl: url, args: ['--token-ttl', '68'] });
    const routes = [{ name: 'up', path: '/mcp/up', http: { url: upstream.url }, identity: { headers: true, idp_access_token: true } }];
    const shared = { redisUrl: redis.url, issuer: idp.issuer, prefix: 'sf:', secretFile: writeSecret(), routes };
    const gw1 = await startGateway({ port: p1, config: oauthGatewayConfig({ port: p1, ...shared }) });
    const gw2 = await startGateway({ port: p2, config: oauthGatewayConfig({ port: p2, ...shared, server: { public_url: url } }) });
    const stack = { redis, idp, gw: gw1, url, port: p1, issuer: idp.issuer };
    const issued = Date.now();
    const { client, tokens } = await obtainTokens(stack, { user: 'alice', resource: `${url}/mcp/up` });
    const r1 = `${url}/mcp/up`;
    const r2 = `http://127.0.0.1:${p2}/mcp/up`;
    const [s1, s2] = [await rawSession(r1, tokens.access_token), await rawSession(r2, tokens.access_token)];
    const before = await headersSeen(r1, tokens.access_token, s1);
    assert.equal(before.status, 200, before.text);
    const t0 = before.headers['x-mcp-idp-access-token'];

    assert.ok(Date.now() < issued + 8000, 'the first request came before the renewal margin');
    await waitFor(() => Date.now() > issued + 8100, { timeoutMs: 15000, intervalMs: 100, what: 'the IdP token to enter the renewal margin' });
    const posts0 = await tokenPosts(idp);
    const answers = await Promise.all([
      ...[1, 2, 3].map(() => headersSeen(r1, tokens.access_token, s1)),
      ...[1, 2, 3].map(() => headersSeen(r2, tokens.access_token, s2)),
    ]);
    for (const a of answers) assert.equal(a.status, 200, `every request is served: ${a.status} ${a.text}`);
    const seen = new Set(answers.map((a) => a.headers['x-mcp-idp-access-token']));
    assert.equal(seen.size, 1, 'every request got the one renewed IdP token');
    assert.ok(!seen.has(t0), 'the IdP token was renewed');
    assert.equal(await tokenPosts(idp) - posts0, 1, 'one renewal reached the IdP');

    // The grant survived (a rotating IdP would have refused a second use of the refresh token).
    const r = await refresh(url, client, tokens.refresh_token);
    assert.equal(r.status, 200, r.text);
    assert.equal(await gw1.stop(), 0);
    assert.equal(await gw2.stop(), 0);
  });
});

describe('idp.recheck_on_refresh: the IdP is asked at every refresh (F7b)', () => {
  let s;
  let upstream;
  before(async () => {
    upstream = await startUpstream();
    s = await startOAuthStack({
      idpConfig: { recheck_on_refresh: true },
      oauth: { registration: { rate: '1000/min' } },
      routes: [{ name: 'up', path: '/mcp/up', http: { url: upstream.url }, identity: { headers: true } }],
    });
  });
  after(async () => {
    await knob(s.idp, 'users/bob', { roles: ['employee'], disabled: false }).catch(() => {});
  });
  const route = () => `${s.url}/mcp/up`;

  test('roles changed at the IdP apply from the next refresh', async () => {
    const { client, tokens } = await obtainTokens(s, { user: 'bob', resource: route() });
    const first = await headersSeen(route(), tokens.access_token, await rawSession(route(), tokens.access_token));
    assert.equal(first.status, 200, first.text);
    assert.doesNotMatch(first.headers['x-mcp-user-roles'] || '', /auditor/);
    await knob(s.idp, 'users/bob', { roles: ['employee', 'auditor'] });
    const posts0 = await tokenPosts(s.idp);
    const r = await refresh(s.url, client, tokens.refresh_token);
    assert.equal(r.status, 200, r.text);
    assert.equal(await tokenPosts(s.idp) - posts0, 1, 'the refresh renewed the sign-in at the IdP');
    const after = await headersSeen(route(), r.json.access_token, await rawSession(route(), r.json.access_token));
    assert.equal(after.status, 200, after.text);
    assert.match(after.headers['x-mcp-user-roles'] || '', /auditor/, `roles now: ${after.headers['x-mcp-user-roles']}`);
  });

  test('an IdP outage answers 503 and leaves the refresh token usable', async () => {
    const { client, tokens } = await obtainTokens(s, { user: 'bob', resource: route() });
    await knob(s.idp, 'fail-next-token', { status: 500 });
    const down = await refresh(s.url, client, tokens.refresh_token);
    assert.equal(down.status, 503, down.text);
    assert.equal(down.json.error, 'temporarily_unavailable');
    assert.ok(down.headers.get('retry-after'));
    const again = await refresh(s.url, client, tokens.refresh_token);
    assert.equal(again.status, 200, `the same refresh token after the outage: ${again.text}`);
  });

  test('a user disabled at the IdP loses the grant at the next refresh: invalid_grant, the access token refused', async () => {
    const { client, tokens } = await obtainTokens(s, { user: 'bob', resource: route() });
    await knob(s.idp, 'users/bob', { disabled: true });
    const r = await refresh(s.url, client, tokens.refresh_token);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error, 'invalid_grant');
    const refused = await waitRefused(s.url, '/mcp/up', tokens.access_token);
    assert.equal(refused.status, 401, 'the grant was revoked, its access token with it');
    await knob(s.idp, 'users/bob', { disabled: false });
  });
});

describe('grants end and are found (F7a, F7c, oauth.max_grant_lifetime)', () => {
  let s;
  let lifetime;
  const PREFIX = 'gl:';
  before(async () => {
    s = await startOAuthStack({ prefix: PREFIX, oauth: { registration: { rate: '1000/min' } } });
    lifetime = await startOAuthStack({ redis: s.redis, oauth: { max_grant_lifetime: '3s' } });
  });
  after(async () => {
    for (const g of [s?.gw, lifetime?.gw]) if (g && !g.exited) assert.equal(await g.stop(), 0);
  });

  test('every refresh slides the user and client indexes and the grant record (F7a)', async () => {
    const { client, tokens } = await obtainTokens(s, { user: 'alice', resource: s.routeUrl('/mcp/whoami') });
    const sub = (await redisCommand(s.redis.port, ['KEYS', `${PREFIX}user:*:grants`]))[0];
    assert.ok(sub, 'the user index exists');
    const [grantId] = await redisCommand(s.redis.port, ['SMEMBERS', sub]);
    const keys = [sub, `${PREFIX}clientgrants:${client.client_id}`, `${PREFIX}grant:${grantId}`];
    // As if the grant were nearly 30 days old: five seconds left.
    for (const k of keys) assert.equal(await redisCommand(s.redis.port, ['PEXPIRE', k, '5000']), 1, k);
    const r = await refresh(s.url, client, tokens.refresh_token);
    assert.equal(r.status, 200, r.text);
    await waitFor(async () => {
      for (const k of keys) if (await redisCommand(s.redis.port, ['PTTL', k]) < 24 * 3600 * 1000) return false;
      return true;
    }, { timeoutMs: 5000, what: 'the indexes and the grant record to get the refresh TTL again' });
  });

  test('a revoked grant ends its open GET stream and its session (F7c)', async () => {
    const { client, tokens } = await obtainTokens(s, { user: 'alice', resource: s.routeUrl('/mcp/whoami') });
    const route = s.routeUrl('/mcp/whoami');
    const sid = await rawSession(route, tokens.access_token);
    const stream = await mcpRequest({
      port: s.port, path: '/mcp/whoami', method: 'GET', session: sid, protocolVersion: '2025-11-25',
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    assert.equal(stream.status, 200);
    assert.ok(stream.sse, 'the GET stream is open');
    assert.equal(stream.sse.ended, false);
    const r = await revoke(s.url, client, tokens.refresh_token);
    assert.equal(r.status, 200, r.text);
    await waitFor(() => stream.sse.ended, { timeoutMs: 5000, what: 'the GET stream of the revoked grant to end' });
    // A new sign-in of the same person cannot reach the ended session either.
    const fresh = await obtainTokens(s, { user: 'alice', client, resource: route });
    const gone = await mcpPost(route, rpc('tools/list'), { token: fresh.tokens.access_token, sessionId: sid });
    assert.equal(gone.status, 404, `the session ended with its grant: ${gone.status} ${gone.text}`);
  });

  test('oauth.max_grant_lifetime: refreshes work until the grant is 3 s old, then invalid_grant', async () => {
    const started = Date.now();
    const { client, tokens } = await obtainTokens(lifetime, { user: 'alice', resource: lifetime.routeUrl('/mcp/whoami') });
    let rt = tokens.refresh_token;
    let last;
    await waitFor(async () => {
      last = await refresh(lifetime.url, client, rt);
      if (last.status === 200) rt = last.json.refresh_token;
      return last.status !== 200;
    }, { timeoutMs: 10000, intervalMs: 200, what: 'a refresh to be refused' });
    assert.ok(Date.now() - started >= 3000, `refused only after the lifetime (${Date.now() - started} ms)`);
    assert.equal(last.status, 400, last.text);
    assert.equal(last.json.error, 'invalid_grant');
    assert.match(last.json.error_description, /maximum lifetime/);
  });
});

describe('code replay races and per-address limits (F20, F19)', () => {
  let s;
  before(async () => {
    s = await startOAuthStack({
      oauth: { registration: { rate: '2/min' }, token_rate: '1000/min' },
      server: { trusted_proxies: ['127.0.0.1'] },
    });
  });
  after(async () => {
    if (s?.gw && !s.gw.exited) assert.equal(await s.gw.stop(), 0);
  });

  test('the same code redeemed twice at once: one answer, and its tokens are revoked (10 trials)', async () => {
    const client = await newClient(s.url, { redirectUri: 'http://127.0.0.1:45001/cb' });
    for (let i = 0; i < 10; i++) {
      const flow = await login(s, { client });
      const [a, b] = await Promise.all([exchangeCode(s.url, client, flow), exchangeCode(s.url, client, flow)]);
      const won = [a, b].filter((x) => x.status === 200);
      assert.equal(won.length, 1, `trial ${i}: exactly one redemption: ${a.status} ${b.status}`);
      const lost = a.status === 200 ? b : a;
      assert.equal(lost.status, 400, lost.text);
      assert.equal(lost.json.error, 'invalid_grant');
      const refused = await waitRefused(s.url, '/mcp/whoami', won[0].json.access_token);
      assert.equal(refused.status, 401, `trial ${i}: the replay revoked the winner's tokens`);
    }
  });

  test('registration is limited per IPv6 /64, not per address', async () => {
    const reg = (ip) => registerClient(s.url, clientMetadata({ redirectUri: 'http://127.0.0.1:45002/cb' }), { headers: { 'x-forwarded-for': ip } });
    assert.equal((await reg('2001:db8:1:2::1')).status, 201);
    assert.equal((await reg('2001:db8:1:2::2')).status, 201);
    const third = await reg('2001:db8:1:2:ffff:ffff:ffff:3');
    assert.equal(third.status, 429, `a third address in the same /64: ${third.status} ${third.text}`);
    assert.equal(third.json.error, 'slow_down');
    assert.equal(third.headers.get('retry-after'), '60');
    assert.equal((await reg('2001:db8:1:3::1')).status, 201, 'the next /64 is counted apart');
    assert.equal((await reg('192.0.2.7')).status, 201, 'IPv4 addresses are counted one by one');
  });
});

describe('oauth.token_rate, authorize_rate, callback_rate (F19)', () => {
  test('the 4th /token request in a minute from one address gets 429 slow_down; another address is served', async () => {
    const s = await startOAuthStack({ oauth: { token_rate: '3/min' }, server: { trusted_proxies: ['127.0.0.1'] } });
    const client = await newClient(s.url, { redirectUri: 'http://127.0.0.1:45003/cb' });
    const req = (ip) => tokenRequest(s.url, { grant_type: 'refresh_token', refresh_token: 'mcpgate_rt_x' }, client, { headers: { 'x-forwarded-for': ip } });
    for (let i = 0; i < 3; i++) assert.equal((await req('198.51.100.1')).status, 400);
    const limited = await req('198.51.100.1');
    assert.equal(limited.status, 429, limited.text);
    assert.equal(limited.json.error, 'slow_down');
    assert.equal(limited.headers.get('retry-after'), '60');
    assert.equal((await req('198.51.100.2')).status, 400, 'another address is not limited');
    assert.equal(await s.gw.stop(), 0);
  });

  test('/authorize and /callback: the 4th request in a minute from one address gets a 429 page with Retry-After, shared by two instances', async () => {
    const s = await startOAuthStack({ oauth: { authorize_rate: '3/min', callback_rate: '3/min' }, server: { trusted_proxies: ['127.0.0.1'] } });
    // A second instance on the same Redis and prefix: the count is shared.
    const port2 = await freePort();
    const text = fs.readFileSync(s.gw.configPath, 'utf8').replaceAll(`127.0.0.1:${s.port}`, `127.0.0.1:${port2}`);
    const gw2 = await startGateway({ port: port2, config: text });
    const client = await newClient(s.url, { redirectUri: 'http://127.0.0.1:45004/cb' });
    const get = (base, ip, p = '/authorize') => fetch(`${base}${p}?client_id=${client.client_id}`, { headers: { 'x-forwarded-for': ip }, redirect: 'manual' });
    assert.notEqual((await get(s.url, '198.51.100.7')).status, 429);
    assert.notEqual((await get(gw2.url, '198.51.100.7')).status, 429);
    assert.notEqual((await get(s.url, '198.51.100.7')).status, 429);
    const limited = await get(gw2.url, '198.51.100.7');
    assert.equal(limited.status, 429, 'the other instance counted the same address');
    assert.equal(limited.headers.get('retry-after'), '60');
    assert.match(limited.headers.get('content-type'), /text\/html/);
    assert.match(await limited.text(), /Too many requests/);
    assert.notEqual((await get(s.url, '198.51.100.8')).status, 429, 'another address is served');
    for (let i = 0; i < 3; i++) assert.notEqual((await get(s.url, '198.51.100.9', '/callback')).status, 429);
    assert.equal((await get(s.url, '198.51.100.9', '/callback')).status, 429);
    assert.equal(await gw2.stop(), 0);
    assert.equal(await s.gw.stop(), 0);
  });
});
