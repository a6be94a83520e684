// An HTTP route in front of a hand-written Streamable HTTP upstream whose
// session ids, timing and answer sizes the test controls: the upstream
// session bindings (review F12) and the deadlines of forwarded requests
// (F11). auth: none routes give each client address its own principal
// (F15), so 127.0.0.1 and 127.0.0.2 are two callers here.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import { gatewayConfig, parseMetrics, startGateway, startRedis, waitFor } from '../lib/harness.mjs';
import { initializeMessage, mcpPost, mcpRequest, routesYaml, toolCall } from '../lib/mcp.mjs';

const ROUTE = '/mcp/up';
const ALICE = '127.0.0.1';
const BOB = '127.0.0.2';

/**
 * The upstream. Session ids come from nextId() (the test sets it); tools:
 * "slow" streams `steps` progress events `gapMs` apart over SSE, then the
 * result; "hang" never answers; tools/list answers JSON of `listBytes`.
 */
async function startRawUpstream() {
  const st = { nextId: () => 'sid-1', seen: [], listBytes: 100, gapMs: 200 };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      st.seen.push({ method: req.method, sid: req.headers['mcp-session-id'], body });
      if (req.method !== 'POST') {
        res.writeHead(req.method === 'DELETE' ? 200 : 405);
        res.end();
        return;
      }
      const msg = JSON.parse(body);
      if (msg.method === 'initialize') {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': st.nextId() });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { protocolVersion: msg.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'raw', version: '1' } } }));
        return;
      }
      if (msg.method === 'notifications/initialized') {
        res.writeHead(202);
        res.end();
        return;
      }
      if (msg.method === 'tools/list') {
        const pad = 'x'.repeat(st.listBytes);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { tools: [{ name: 'slow', description: pad, inputSchema: { type: 'object' } }, { name: 'secret', inputSchema: { type: 'object' } }] } }));
        return;
      }
      if (msg.method === 'tools/call' && msg.params.name === 'hang') return; // never answers
      if (msg.method === 'tools/call' && msg.params.name === 'big') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: 'b'.repeat(msg.params.arguments.bytes) }] } }));
        return;
      }
      if (msg.method === 'tools/call' && msg.params.name === 'slow') {
        const steps = msg.params.arguments?.steps ?? 5;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
        let i = 0;
        const tick = () => {
          if (res.destroyed) return;
          if (i < steps) {
            i++;
            res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'p', progress: i, total: steps } })}\n\n`);
            setTimeout(tick, st.gapMs);
          } else {
            res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: `done ${steps}` }] } })}\n\n`);
          }
        };
        tick();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: `ok ${req.headers['mcp-session-id']}` }] } }));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  st.port = server.address().port;
  st.stop = () => {
    server.closeAllConnections?.();
    return new Promise((r) => server.close(() => r()));
  };
  return st;
}

let up;
before(async () => {
  up = await startRawUpstream();
});
after(async () => {
  await up?.stop();
});

const route = (http_) => routesYaml([{
  name: 'up', path: ROUTE, auth: 'none',
  http: { url: `http://127.0.0.1:${up.port}/mcp`, ...http_ },
  tools: [{ match: 'secret', deny: true }],
}]);
const start = (http_ = {}, limits = {}) => startGateway({
  config: ({ port }) => gatewayConfig({ port, limits, extra: route(http_) }),
});
const init = async (gw, from) => {
  const r = await mcpPost(gw.port, ROUTE, initializeMessage(1), { localAddress: from });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.headers['mcp-session-id'];
};
const call = (gw, from, sid, id = 2, name = 'echo') =>
  mcpPost(gw.port, ROUTE, toolCall(id, name, {}), { localAddress: from, session: sid });

describe('upstream session bindings (F12)', () => {
  let gw;
  after(async () => {
    if (gw) assert.equal(await gw.stop(), 0);
  });

  test('an id the upstream hands out again is re-bound to the new caller; the old caller gets 404', async () => {
    gw = await start();
    up.nextId = () => 'reused-1';
    assert.equal(await init(gw, ALICE), 'reused-1');
    assert.equal((await call(gw, ALICE, 'reused-1')).status, 200);
    assert.equal((await call(gw, BOB, 'reused-1')).status, 404, "Bob cannot use Alice's session");
    // The upstream restarted and counts from 1 again: Bob's new session has Alice's old id.
    assert.equal(await init(gw, BOB), 'reused-1');
    const bob = await call(gw, BOB, 'reused-1');
    assert.equal(bob.status, 200);
    assert.equal(bob.response.result.content[0].text, 'ok reused-1');
    const alice = await call(gw, ALICE, 'reused-1');
    assert.equal(alice.status, 404, "Alice's stale id does not reach Bob's upstream session");
  });

  test("a caller at max_sessions_per_user loses its own least recently used binding, never another caller's", async () => {
    await gw.stop();
    gw = await start({}, { max_sessions_per_user: 2 });
    let n = 0;
    up.nextId = () => `s-${++n}`;
    const bob = await init(gw, BOB); // s-1
    const a1 = await init(gw, ALICE);
    const a2 = await init(gw, ALICE);
    assert.equal((await call(gw, ALICE, a1)).status, 200); // a1 is now the most recently used
    const a3 = await init(gw, ALICE); // evicts a2, Alice's least recently used
    assert.equal((await call(gw, ALICE, a2)).status, 404);
    assert.equal((await call(gw, ALICE, a1)).status, 200);
    assert.equal((await call(gw, ALICE, a3)).status, 200);
    for (let i = 0; i < 5; i++) await init(gw, ALICE);
    assert.equal((await call(gw, BOB, bob)).status, 200, "Alice's sessions never evict Bob's");
  });

  test('max_upstream_sessions bounds all bindings: the least recently used goes', async () => {
    await gw.stop();
    gw = await start({}, { max_upstream_sessions: 3 });
    let n = 0;
    up.nextId = () => `g-${++n}`;
    const first = await init(gw, BOB);
    for (let i = 0; i < 3; i++) await init(gw, ALICE);
    assert.equal((await call(gw, BOB, first)).status, 404);
  });

  test('a binding unused for http.session_idle is forgotten (404: initialize again)', async () => {
    await gw.stop();
    gw = await start({ session_idle: '1s' });
    up.nextId = () => 'idle-1';
    const sid = await init(gw, ALICE);
    assert.equal((await call(gw, ALICE, sid)).status, 200, 'used at once, it is known');
    const seen = up.seen.length;
    const t0 = Date.now();
    await waitFor(async () => (await call(gw, ALICE, sid)).status === 404, { timeoutMs: 5000, intervalMs: 1200, what: 'the idle binding to expire' });
    assert.ok(Date.now() - t0 >= 1000, 'not before session_idle');
    assert.ok(up.seen.slice(seen).every((r) => r.sid !== sid || r.body.includes('"echo"')), 'nothing else reached the upstream');
  });
});

describe('forwarded request deadlines (F11)', () => {
  let gw;
  after(async () => {
    if (gw) assert.equal(await gw.stop(), 0);
  });

  test('an SSE answer that streams past http.timeout is not cut: every event and the result arrive', async () => {
    gw = await start({ timeout: '500ms', idle_timeout: '5s' });
    up.nextId = () => 'sse-1';
    const sid = await init(gw, ALICE);
    up.gapMs = 200;
    const t0 = Date.now();
    const r = await mcpPost(gw.port, ROUTE, toolCall(7, 'slow', { steps: 6 }), { localAddress: ALICE, session: sid });
    assert.ok(Date.now() - t0 >= 1000, 'the stream outlived http.timeout');
    assert.equal(r.status, 200);
    assert.equal(r.messages.filter((m) => m.method === 'notifications/progress').length, 6);
    assert.equal(r.response?.result?.content?.[0]?.text, 'done 6');
  });

  test('an upstream that sends no answer head within http.timeout: 504 with a JSON-RPC error', async () => {
    const sid = await init(gw, ALICE);
    const t0 = Date.now();
    const r = await call(gw, ALICE, sid, 8, 'hang');
    assert.ok(Date.now() - t0 >= 450, `answered after ${Date.now() - t0} ms`);
    assert.equal(r.status, 504);
    assert.equal(r.json.jsonrpc, '2.0');
    assert.equal(r.json.error.code, -32000);
    assert.match(r.json.error.message, /too slow/);
  });

  test('a filtered list answer over 4 x max_body: 502 with a JSON-RPC error, not a 200 with an empty body', async () => {
    await gw.stop();
    gw = await start({}, { max_body: '1KiB' });
    const sid = await init(gw, ALICE);
    up.listBytes = 100;
    const small = await mcpPost(gw.port, ROUTE, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, { localAddress: ALICE, session: sid });
    assert.equal(small.status, 200);
    assert.deepEqual(small.json.result.tools.map((t) => t.name), ['slow'], 'the denied tool is filtered out');
    up.listBytes = 8 * 1024;
    const big = await mcpPost(gw.port, ROUTE, { jsonrpc: '2.0', id: 4, method: 'tools/list' }, { localAddress: ALICE, session: sid });
    assert.equal(big.status, 502);
    assert.equal(big.json.error.code, -32000);
    assert.match(big.json.error.message, /exceeds 4 x server.limits.max_body/);
  });
});

describe('2024-11-05 clients of an HTTP upstream: nothing dropped, everything bounded (F17, F19)', () => {
  let gw;
  after(async () => {
    if (gw) assert.equal(await gw.stop(), 0);
  });

  /** Opens <route>/sse from FROM, initializes through the bridge; {s, send, next}. */
  const openLegacy = async (from) => {
    const s = await mcpRequest({ port: gw.port, path: `${ROUTE}/sse`, method: 'GET', localAddress: from });
    assert.equal(s.status, 200);
    const endpoint = await s.sse.next(5000);
    assert.equal(endpoint.event, 'endpoint');
    const send = (body) => mcpPost(gw.port, endpoint.data, body, { localAddress: from });
    const next = async (ms = 10000) => {
      for (;;) {
        const ev = await s.sse.next(ms);
        if (!ev) return null;
        if (ev.data && ev.event === 'message') return JSON.parse(ev.data);
      }
    };
    assert.equal((await send(initializeMessage(1, { protocolVersion: '2024-11-05' }))).status, 202);
    assert.equal((await next()).id, 1);
    return { s, send, next };
  };

  test('a client that reads slowly gets every answer, in order (the upstream waits for it)', async () => {
    gw = await start({}, { sse_high_water: '64KiB' });
    up.nextId = () => 'legacy-1';
    const c = await openLegacy(ALICE);
    c.s.res.pause(); // stop reading
    for (let id = 10; id < 13; id++) assert.equal((await c.send(toolCall(id, 'big', { bytes: 300 * 1024 }))).status, 202);
    c.s.res.resume();
    const got = [];
    for (let i = 0; i < 3; i++) {
      const m = await c.next();
      assert.ok(m, `answer ${i} never came`);
      got.push([m.id, m.result.content[0].text.length]);
    }
    assert.deepEqual(got, [[10, 300 * 1024], [11, 300 * 1024], [12, 300 * 1024]]);
    assert.ok(!gw.logs().some((l) => /dropped/.test(l.msg)), 'an event was dropped');
    c.s.close();
  });

  test('a client that reads nothing for request_timeout loses its stream; the bridge goes', async () => {
    await gw.stop();
    gw = await start({}, { sse_high_water: '64KiB', request_timeout: '1s' });
    const c = await openLegacy(ALICE);
    c.s.res.pause();
    // More than the socket buffers hold, so the gateway's own buffer fills.
    for (let id = 20; id < 24; id++) assert.equal((await c.send(toolCall(id, 'big', { bytes: 4 * 1024 * 1024 }))).status, 202);
    // The stream ends (the stall deadline, or the socket's write timeout, whichever is first).
    const bridges = async () => parseMetrics(await (await fetch(`${gw.url}/metrics`)).text()).get('mcpgate_legacy_bridges');
    await waitFor(async () => (await bridges()) === 0, { timeoutMs: 15000, what: 'the bridge to go' });
    c.s.res.resume();
    await c.s.sse.waitEnd(10000);
    const endpoint = c.s.sse.received.find((e) => e.event === 'endpoint').data;
    const after = await mcpPost(gw.port, endpoint, toolCall(30, 'echo', {}), { localAddress: ALICE });
    assert.equal(after.status, 404, 'the bridge is gone');
  });

  test('messages in flight per bridge are capped: the one past max_pending_per_session gets 503 and an error on the stream', async () => {
    await gw.stop();
    gw = await start({}, { max_pending_per_session: 2 });
    const c = await openLegacy(ALICE);
    assert.equal((await c.send(toolCall(40, 'hang', {}))).status, 202);
    assert.equal((await c.send(toolCall(41, 'hang', {}))).status, 202);
    const third = await c.send(toolCall(42, 'hang', {}));
    assert.equal(third.status, 503);
    assert.equal(third.json.error.code, -32001);
    assert.equal(third.headers['retry-after'], '1');
    const m = await c.next();
    assert.equal(m.id, 42);
    assert.equal(m.error.code, -32001);
    assert.match(m.error.message, /max_pending_per_session/);
    c.s.close();
  });

  test('bridges per caller are capped at max_sessions_per_user; another caller still gets one', async () => {
    await gw.stop();
    gw = await start({}, { max_sessions_per_user: 2 });
    const a = [await openLegacy(ALICE), await openLegacy(ALICE)];
    const third = await mcpRequest({ port: gw.port, path: `${ROUTE}/sse`, method: 'GET', localAddress: ALICE });
    assert.equal(third.status, 503);
    const j = await third.json();
    assert.equal(j.error.code, -32001);
    assert.match(j.error.message, /max_sessions_per_user/);
    const bob = await openLegacy(BOB);
    a[0].s.close(); // a closed stream frees its slot
    await waitFor(async () => {
      const r = await mcpRequest({ port: gw.port, path: `${ROUTE}/sse`, method: 'GET', localAddress: ALICE });
      r.close();
      return r.status === 200;
    }, { what: 'the freed slot' });
    a[1].s.close();
    bob.s.close();
  });
});

describe('bindings live in the store: any instance serves any session (issue 10)', () => {
  const gws = [];
  after(async () => {
    for (const g of gws) assert.equal(await g.stop(), 0);
  });

  test('initialize on one instance, use it on another; another caller gets 404 there; a re-bind is seen at once', async () => {
    const redis = await startRedis();
    const cfg = ({ port }) => gatewayConfig({ port, store: { url: redis.url }, extra: route({}) });
    const a = await startGateway({ config: cfg });
    const b = await startGateway({ config: cfg });
    gws.push(a, b);
    up.nextId = () => 'shared-1';
    assert.equal(await init(a, ALICE), 'shared-1');
    const there = await call(b, ALICE, 'shared-1');
    assert.equal(there.status, 200, there.text);
    assert.equal(there.response.result.content[0].text, 'ok shared-1');
    assert.equal((await call(b, BOB, 'shared-1')).status, 404, 'another caller, on the other instance');
    // The upstream hands the same id to Bob through instance B: A forgets Alice's copy at once.
    assert.equal((await call(a, ALICE, 'shared-1')).status, 200, 'A has it cached');
    assert.equal(await init(b, BOB), 'shared-1');
    await waitFor(async () => (await call(a, ALICE, 'shared-1')).status === 404, { timeoutMs: 3000, what: "A to drop Alice's stale binding" });
    assert.equal((await call(a, BOB, 'shared-1')).status, 200, 'and serves Bob on it');
  });
});
