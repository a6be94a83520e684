// Tokens across a Redis failover (issue 10): the gateway's store is a real
// Sentinel set (master, replica, three sentinels; tests/lib/sentinel.mjs).
// A user logs in through the test IdP and holds a session; requests keep
// flowing while the master is SIGKILLed and the sentinels promote the
// replica. Every answer in that window is 200 or the documented 503 with
// Retry-After (never a 401, a hang or another error); after it, the token
// made before the kill validates on a fresh instance (no bearer cache: read
// from the new master), the refresh token works, and a new login works.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { freePort, request, startGateway, teardownAll, waitFor } from '../lib/harness.mjs';
import { initializeMessage, mcpPost } from '../lib/mcp.mjs';
import { oauthGatewayConfig, obtainTokens, refresh, startIdp } from '../lib/oauth.mjs';
import { startSentinelSet } from '../lib/sentinel.mjs';

const ROUTE = '/mcp/whoami';
let set;

after(async () => {
  await teardownAll();
  await set?.stop();
});


describe('tokens across a Sentinel failover', () => {
  test('a token keeps validating, with only 503s while the master is gone', { timeout: 120000 }, async () => {
    set = await startSentinelSet();
    const portA = await freePort();
    const url = `http://127.0.0.1:${portA}`;
    const idp = await startIdp({ gatewayUrl: url });
    // One configuration for both instances but the listener: the same secret and
    // public URL (tokens are bound to it, RFC 8707); the store is the sentinels only.
    const base = JSON.parse(oauthGatewayConfig({ port: portA, redisUrl: 'unused', issuer: idp.issuer }));
    const prefix = base.store.redis.prefix;
    const write = (cfg) => `${JSON.stringify({ ...cfg, store: { backend: 'redis', redis: { ...set.redis, prefix } } }, null, 2)}\n`;
    const a = await startGateway({ port: portA, config: write(base) });
    const ready = async (port) => (await request({ port, path: '/readyz', timeoutMs: 3000 }).catch(() => ({ status: 0 }))).status === 200;
    await waitFor(() => ready(portA), { timeoutMs: 15000, intervalMs: 100, what: 'A ready through the sentinels' });

    const { client, tokens } = await obtainTokens({ url });
    const bearer = { authorization: `Bearer ${tokens.access_token}` };
    const init = await mcpPost(portA, ROUTE, initializeMessage(1), { headers: bearer });
    assert.equal(init.status, 200, init.text);
    const session = init.headers['mcp-session-id'];
    const opts = { session, protocolVersion: init.response.result.protocolVersion, headers: bearer, timeoutMs: 8000 };
    assert.equal((await mcpPost(portA, ROUTE, { jsonrpc: '2.0', method: 'notifications/initialized' }, opts)).status, 202);
    await set.sync(); // the grant and tokens are on the replica too

    // Requests flow, one after another, through the kill and the promotion.
    const seen = [];
    let flowing = true;
    let id = 10;
    const loop = (async () => {
      while (flowing) {
        const r = await mcpPost(portA, ROUTE, { jsonrpc: '2.0', id: id++, method: 'tools/list', params: {} }, opts)
          .catch((e) => ({ status: 0, error: e.message }));
        seen.push({ status: r.status, retryAfter: r.headers?.['retry-after'], tools: r.response?.result?.tools?.length, at: Date.now(), error: r.error, text: r.text });
      }
    })();
    await waitFor(() => seen.length >= 5, { what: 'requests flowing before the kill' });
    const killedAt = Date.now();
    await set.killMaster();
    await set.waitPromoted();
    await waitFor(() => ready(portA), { timeoutMs: 20000, intervalMs: 100, what: 'A ready on the new master' });
    const readyAt = Date.now();
    const after = seen.length;
    await waitFor(() => seen.length >= after + 10, { what: 'requests flowing after the failover' });
    flowing = false;
    await loop;

    const bad = seen.filter((s) => !(s.status === 200 && s.tools > 0) && !(s.status === 503 && s.retryAfter));
    assert.deepEqual(bad, [], 'every answer is 200 with the tools, or 503 with Retry-After');
    assert.ok(seen.slice(after).every((s) => s.status === 200), 'all 200 once the gateway is ready again');
    const window = seen.filter((s) => s.status === 503);
    console.log(`# ${seen.length} requests, ${window.length} answered 503; kill → ready ${readyAt - killedAt} ms`);

    // A fresh instance (empty bearer cache) reads the token from the new master.
    const portB = await freePort();
    const b = await startGateway({ port: portB, config: write({ ...base, server: { ...base.server, listen: [`127.0.0.1:${portB}`] } }) });
    await waitFor(() => ready(portB), { timeoutMs: 15000, intervalMs: 100, what: 'B ready' });
    const viaB = await mcpPost(portB, ROUTE, initializeMessage(2), { headers: bearer });
    assert.equal(viaB.status, 200, `the token made before the failover, on a fresh instance: ${viaB.status} ${viaB.text}`);
    await mcpPost(portB, ROUTE, undefined, { method: 'DELETE', session: viaB.headers['mcp-session-id'], headers: bearer }).catch(() => {});

    // The refresh token written before the kill works, and so does a new login.
    const r = await refresh(url, client, tokens.refresh_token);
    assert.equal(r.status, 200, r.text);
    const fresh = await mcpPost(portA, ROUTE, initializeMessage(3), { headers: { authorization: `Bearer ${r.json.access_token}` } });
    assert.equal(fresh.status, 200, fresh.text);
    const again = await obtainTokens({ url });
    assert.ok(again.tokens.access_token);
    assert.equal(await b.stop(), 0);
    assert.equal(await a.stop(), 0);
  });
});
