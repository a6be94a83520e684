// The MCP 2026-07-28 ("modern", stateless) front of a STDIO route, spoken raw,
// and the same route serving a legacy client at the same time; and the warm
// pool of pre-initialized children (stdio.warm).
// README "Modern clients (MCP 2026-07-28) in front of legacy STDIO servers",
// "Warm children"; checklist §2, §2b; research B4.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { gatewayConfig, startGateway, waitFor } from '../lib/harness.mjs';
import { McpClient, childPids, eventJson, mcpPost, mcpRequest, pidExists, procState, routesYaml, toolText, whoamiRoute } from '../lib/mcp.mjs';

const ROUTE = '/mcp/who';
const MODERN = '2026-07-28';
const META = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientCapabilities': {},
  'io.modelcontextprotocol/clientInfo': { name: 'mcpgate-tests', version: '1' },
};

const alive = (pid) => pidExists(pid) && procState(pid) !== 'Z';

function modernBody(id, method, params = {}, meta = {}) {
  return { jsonrpc: '2.0', id, method, params: { ...params, _meta: { ...META, ...meta } } };
}

function modernHeaders(method, name, extra = {}) {
  const h = { 'mcp-method': method, ...extra };
  if (name !== undefined) h['mcp-name'] = name;
  return h;
}

describe('modern front (modern: true)', () => {
  let gw;
  const post = (body, headers, opts = {}) =>
    mcpPost(gw.port, ROUTE, body, { protocolVersion: MODERN, headers, ...opts });

  before(async () => {
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({
        port,
        extra: routesYaml([whoamiRoute({
          path: ROUTE, modern: true, identity: { meta: true },
          tools: [{ match: 'crash', deny: true }],
          stdio: { idle_timeout: '2s' },
        })]),
      }),
    });
  });
  after(async () => {
    if (gw) assert.equal(await gw.stop(), 0);
  });

  test('server/discover answers from the InitializeResult of a child the gateway initialized', async () => {
    const r = await post(modernBody('d1', 'server/discover'), modernHeaders('server/discover'));
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.id, 'd1');
    const res = r.json.result;
    assert.equal(res.resultType, 'complete');
    assert.deepEqual(res.supportedVersions, [MODERN]);
    assert.ok(res.capabilities.tools, 'no tools capability');
    assert.equal(res.capabilities.logging, undefined, 'logging is not bridged');
    assert.equal(res._meta['io.modelcontextprotocol/serverInfo'].name, 'whoami-server');
    assert.equal(res.ttlMs, 0);
    assert.equal(res.cacheScope, 'private');
    assert.equal(r.headers['mcp-session-id'], undefined, 'a modern answer has no session');
  });

  test('tools/list and tools/call: results are modern, the policy filters and refuses, ids are the client\'s', async () => {
    const list = await post(modernBody(7, 'tools/list'), modernHeaders('tools/list'));
    assert.equal(list.status, 200);
    assert.equal(list.json.id, 7);
    assert.equal(list.json.result.resultType, 'complete');
    assert.equal(list.json.result.ttlMs, 0);
    const names = list.json.result.tools.map((t) => t.name);
    assert.ok(names.includes('whoami') && !names.includes('crash'), names.join());

    const call = await post(modernBody('x-1', 'tools/call', { name: 'whoami', arguments: {} }), modernHeaders('tools/call', 'whoami'));
    assert.equal(call.status, 200);
    assert.equal(call.json.id, 'x-1');
    assert.equal(call.json.result.resultType, 'complete');
    assert.match(toolText(call.json), /anonymous/);

    const denied = await post(modernBody(8, 'tools/call', { name: 'crash', arguments: {} }), modernHeaders('tools/call', 'crash'));
    assert.equal(denied.json.error.code, -32602);
    assert.match(denied.json.error.message, /Unknown tool: crash/);
  });

  test('the revision\'s errors: -32020 header mismatch, -32022 with data.supported, -32602 for missing capabilities, 404 -32601 for removed methods', async () => {
    const noName = await post(modernBody(1, 'tools/call', { name: 'whoami', arguments: {} }), modernHeaders('tools/call'));
    assert.equal(noName.status, 400);
    assert.equal(noName.json.error.code, -32020);
    const wrongName = await post(modernBody(2, 'tools/call', { name: 'whoami', arguments: {} }), modernHeaders('tools/call', 'echo'));
    assert.equal(wrongName.json.error.code, -32020);
    const b64 = await post(modernBody(3, 'tools/call', { name: 'whoami', arguments: {} }),
      modernHeaders('tools/call', `=?base64?${Buffer.from('whoami').toString('base64')}?=`));
    assert.equal(b64.status, 200, 'a Base64-sentinel Mcp-Name must be decoded');
    const wrongMethod = await post(modernBody(4, 'tools/list'), modernHeaders('prompts/list'));
    assert.equal(wrongMethod.json.error.code, -32020);
    const headerVsMeta = await post(modernBody(5, 'tools/list'), modernHeaders('tools/list'), { protocolVersion: '2025-11-25' });
    assert.equal(headerVsMeta.status, 400);
    assert.equal(headerVsMeta.json.error.code, -32020);
    const future = await post(modernBody(6, 'tools/list', {}, { 'io.modelcontextprotocol/protocolVersion': '2099-01-01' }),
      modernHeaders('tools/list'), { protocolVersion: '2099-01-01' });
    assert.equal(future.status, 400);
    assert.equal(future.json.error.code, -32022);
    assert.deepEqual(future.json.error.data.supported, [MODERN]);
    assert.equal(future.json.error.data.requested, '2099-01-01');
    const body = modernBody(7, 'tools/list');
    delete body.params._meta['io.modelcontextprotocol/clientCapabilities'];
    const noCaps = await post(body, modernHeaders('tools/list'));
    assert.equal(noCaps.status, 400);
    assert.equal(noCaps.json.error.code, -32602);
    for (const [m, params] of [['ping', {}], ['resources/subscribe', { uri: 'mem://x' }], ['logging/setLevel', { level: 'info' }]]) {
      const r = await post(modernBody(8, m, params), modernHeaders(m));
      assert.equal(r.status, 404, m);
      assert.equal(r.json.error.code, -32601, m);
    }
  });

  test('progress streams on the request\'s SSE response with the client\'s token', async () => {
    const r = await post(modernBody(9, 'tools/call', { name: 'slow', arguments: { seconds: 1, steps: 3 } }, { progressToken: 'my-token' }),
      modernHeaders('tools/call', 'slow'));
    assert.equal(r.status, 200);
    assert.match(r.contentType, /^text\/event-stream/);
    const progress = r.messages.filter((m) => m.method === 'notifications/progress');
    assert.equal(progress.length, 3, JSON.stringify(r.messages));
    for (const p of progress) assert.equal(p.params.progressToken, 'my-token');
    assert.equal(r.response.id, 9);
    assert.equal(r.response.result.resultType, 'complete');
  });

  test('closing the response cancels: the child is told notifications/cancelled and later requests work', async () => {
    const r = await mcpRequest({
      port: gw.port, path: ROUTE, body: modernBody(10, 'tools/call', { name: 'slow', arguments: { seconds: 5, steps: 5 } }, { progressToken: 1 }),
      protocolVersion: MODERN, headers: modernHeaders('tools/call', 'slow'),
    });
    assert.match(r.contentType, /^text\/event-stream/);
    const first = eventJson(await r.sse.next(5000));
    assert.equal(first.method, 'notifications/progress');
    r.close();
    // The same caller's child serves the next request at once: it was not left waiting.
    const next = await post(modernBody(11, 'tools/call', { name: 'echo', arguments: { text: 'after' } }), modernHeaders('tools/call', 'echo'));
    assert.equal(toolText(next.json), 'after');
  });

  test('a legacy client uses the same route at the same time', async () => {
    const c = new McpClient(gw.port, ROUTE);
    await c.initialize();
    const legacy = await c.callTool('echo', { text: 'legacy' });
    assert.equal(toolText(legacy.json), 'legacy');
    const modern = await post(modernBody(12, 'tools/call', { name: 'echo', arguments: { text: 'modern' } }), modernHeaders('tools/call', 'echo'));
    assert.equal(toolText(modern.json), 'modern');
    assert.equal(await c.delete(), 204);
  });

  test('the pooled child ends after stdio.idle_timeout; a crashed one is replaced on the next request', async () => {
    const before = new Set(childPids(gw.pid));
    const r = await post(modernBody(13, 'tools/call', { name: 'whoami', arguments: {} }), modernHeaders('tools/call', 'whoami'));
    assert.equal(r.status, 200);
    const pool = childPids(gw.pid).filter(alive);
    assert.ok(pool.length >= 1, 'no pooled child');
    await waitFor(() => childPids(gw.pid).filter(alive).length === 0, { timeoutMs: 8000, what: 'the idle modern child to end' });
    const again = await post(modernBody(14, 'tools/call', { name: 'whoami', arguments: {} }), modernHeaders('tools/call', 'whoami'));
    assert.equal(again.status, 200);
    const fresh = childPids(gw.pid).filter(alive).filter((p) => !before.has(p));
    assert.ok(fresh.length >= 1, 'no new child');
    process.kill(fresh[0], 'SIGKILL');
    await waitFor(() => !alive(fresh[0]), { timeoutMs: 3000, what: 'the killed child to go' });
    const after = await post(modernBody(15, 'tools/call', { name: 'whoami', arguments: {} }), modernHeaders('tools/call', 'whoami'));
    assert.equal(after.status, 200, JSON.stringify(after.json));
    assert.match(toolText(after.json), /anonymous/);
  });
});

describe('stdio.pool: per-request', () => {
  let gw;
  after(async () => {
    if (gw) assert.equal(await gw.stop(), 0);
  });

  test('every modern request gets a child of its own, gone after its answer', async () => {
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({
        port, extra: routesYaml([whoamiRoute({ path: ROUTE, modern: true, stdio: { pool: 'per-request' } })]),
      }),
    });
    for (let i = 0; i < 2; i++) {
      const r = await mcpPost(gw.port, ROUTE, modernBody(i, 'tools/call', { name: 'echo', arguments: { text: `n${i}` } }),
        { protocolVersion: MODERN, headers: modernHeaders('tools/call', 'echo') });
      assert.equal(toolText(r.json), `n${i}`);
      await waitFor(() => childPids(gw.pid).filter(alive).length === 0, { timeoutMs: 5000, what: 'the per-request child to end' });
    }
  });
});

describe('check-config: the era is one per origin', () => {
  test('modern on one route but not another is refused', async () => {
    const { runCli, writeTemp } = await import('../lib/harness.mjs');
    const cfg = writeTemp('mixed-era.yaml', gatewayConfig({
      port: 18999,
      extra: routesYaml([whoamiRoute({ name: 'a', path: '/mcp/a', modern: true }), whoamiRoute({ name: 'b', path: '/mcp/b' })]),
    }) + 'server:\n  allow_unauthenticated_routes: true\n');
    const r = await runCli(['check-config', cfg]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr + r.stdout, /modern: must be true on every route/);
  });
});

describe('stdio.warm', () => {
  let gw;
  after(async () => {
    if (gw) assert.equal(await gw.stop(), 0);
  });

  test('a new session takes a pre-initialized child; the pool refills; a child is never handed twice', async () => {
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({
        port,
        extra: routesYaml([whoamiRoute({ path: ROUTE, identity: { env: false, jwt: false, meta: true }, stdio: { warm: 2 } })]),
      }),
    });
    await waitFor(() => childPids(gw.pid).filter(alive).length === 2, { timeoutMs: 5000, what: 'two warm children' });
    const warm = new Set(childPids(gw.pid).filter(alive));
    const c = new McpClient(gw.port, ROUTE);
    const t0 = performance.now();
    await c.initialize();
    const setup = performance.now() - t0;
    const who = await c.callTool('whoami');
    assert.match(toolText(who.json), /anonymous/, 'the per-request identity (_meta) reaches the warm child');
    await waitFor(() => childPids(gw.pid).filter(alive).length === 3, { timeoutMs: 5000, what: 'the pool to refill' });
    const mine = childPids(gw.pid).filter(alive).filter((p) => warm.has(p));
    assert.equal(mine.length, 2, 'the session took one of the warm children (the other waits)');
    assert.equal(await c.delete(), 204);
    await waitFor(() => childPids(gw.pid).filter(alive).length === 2, { timeoutMs: 5000, what: 'the session\'s child to end, not to go back to the pool' });
    const left = new Set(childPids(gw.pid).filter(alive));
    const taken = [...warm].filter((p) => !left.has(p));
    assert.equal(taken.length, 1, 'exactly one warm child was taken, and it is gone');
    console.log(`# warm session setup: ${setup.toFixed(1)} ms (initialize answered from the pool)`);
  });

  test('check-config refuses warm with the identity in the environment', async () => {
    const { runCli, writeTemp } = await import('../lib/harness.mjs');
    const cfg = writeTemp('warm-env.yaml', gatewayConfig({
      port: 18998, extra: routesYaml([whoamiRoute({ path: ROUTE, stdio: { warm: 1 } })]),
    }));
    const r = await runCli(['check-config', cfg]);
    assert.equal(r.code, 2);
    assert.match(r.stderr + r.stdout, /warm: 1 needs identity\.env/);
  });
});
