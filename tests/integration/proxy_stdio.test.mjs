// The Streamable HTTP front of a STDIO route, spoken raw (node:http, no SDK):
// sessions, JSON and SSE answers, transport errors, the GET stream, server
// requests (sampling), resumption with Last-Event-ID, the 2024-11-05
// HTTP+SSE transport, and the environment the child gets.
// README "The MCP endpoint"; MCP spec checklist §2b, §3, §4, §5, §7.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { gatewayConfig, sleep, startGateway, waitFor } from '../lib/harness.mjs';
import {
  ACCEPT_BOTH, LATEST, McpClient, childPids, eventJson, initializeMessage, mcpPost, mcpRequest, newChild, pidExists,
  procNice, procState, routesYaml, toolCall, toolText, whoamiRoute,
} from '../lib/mcp.mjs';

const ROUTE = '/mcp/who';

let gw;
let port;

before(async () => {
  gw = await startGateway({
    config: ({ port: p }) => gatewayConfig({
      port: p,
      extra: routesYaml([
        whoamiRoute({ path: ROUTE, stdio: { env: { FOO: 'bar', EMPTY_ONE: '' }, env_passthrough: ['PASS_ME'] } }),
        whoamiRoute({ name: 'nice', path: '/mcp/nice', stdio: { nice: 7 } }),
      ]),
    }),
    env: { SECRET_TEST_VAR: 'x', PASS_ME: 'y' },
  });
  port = gw.port;
});

after(async () => {
  if (gw) assert.equal(await gw.stop(), 0, 'mcpgate did not exit 0 on SIGTERM');
});

const post = (body, opts = {}) => mcpPost(port, ROUTE, body, opts);
const errCode = (r) => r.json?.error?.code;

describe('Streamable HTTP session', () => {
  const client = () => new McpClient(port, ROUTE);
  let c;
  const seenIds = new Set();
  const noteIds = (events) => {
    for (const e of events) {
      assert.ok(e.id, `an SSE event without id: ${JSON.stringify(e)}`);
      assert.ok(!seenIds.has(e.id), `event id ${e.id} used twice in the session`);
      seenIds.add(e.id);
    }
  };

  test('initialize → 200 JSON with Mcp-Session-Id; initialized → 202; tools/list as JSON', async () => {
    c = client();
    const init = await post(initializeMessage(1));
    assert.equal(init.status, 200, init.text);
    assert.match(init.contentType, /^application\/json/);
    const sid = init.headers['mcp-session-id'];
    assert.ok(sid, 'no Mcp-Session-Id');
    assert.ok(sid.length >= 43, `session id too short: ${sid}`);
    assert.match(sid, /^[\x21-\x7e]+$/, 'session id must be visible ASCII');
    assert.equal(init.json.id, 1);
    assert.equal(init.json.result.protocolVersion, LATEST);
    assert.equal(init.json.result.serverInfo.name, 'whoami-server');
    c.session = sid;
    c.version = init.json.result.protocolVersion;
    c.nextId = 2;

    const n = await c.notify('notifications/initialized');
    assert.equal(n.status, 202);
    assert.equal(n.text, '');

    const list = await c.request('tools/list');
    assert.equal(list.status, 200);
    assert.match(list.contentType, /^application\/json/);
    const names = list.json.result.tools.map((t) => t.name);
    for (const t of ['whoami', 'echo', 'add', 'slow', 'sample', 'env_dump', 'crash', 'big_line']) assert.ok(names.includes(t), `tools/list lacks ${t}: ${names}`);

    const echo = await c.callTool('echo', { text: 'héllo' });
    assert.equal(echo.status, 200);
    assert.equal(toolText(echo.json), 'héllo');
  });

  test('a call with a progressToken answers text/event-stream: priming event, progress, then the response', async () => {
    const r = await c.start(toolCall(50, 'slow', { seconds: 0.4, steps: 3 }, 'tok-1'));
    assert.equal(r.status, 200);
    assert.match(r.contentType, /^text\/event-stream/);
    assert.equal(r.headers['cache-control'], 'no-cache');
    assert.equal(r.headers['x-accel-buffering'], 'no');
    const events = await r.sse.rest(10000);
    const priming = events[0];
    assert.ok(priming.id, 'the priming event has no id');
    assert.equal(priming.data, '', 'the priming event must have empty data');
    const msgs = events.slice(1).map(eventJson);
    const progress = msgs.filter((m) => m.method === 'notifications/progress');
    assert.deepEqual(progress.map((m) => m.params.progress), [1, 2, 3]);
    for (const m of progress) assert.equal(m.params.progressToken, 'tok-1');
    const last = msgs[msgs.length - 1];
    assert.equal(last.id, 50, 'the response must be the last event');
    assert.match(toolText(last), /^done/);
    noteIds(events);

    // A second streamed call in the same session: ids stay unique.
    const r2 = await c.start(toolCall(51, 'slow', { seconds: 0.2, steps: 2 }, 7));
    const ev2 = await r2.sse.rest(10000);
    assert.equal(eventJson(ev2[ev2.length - 1]).id, 51);
    noteIds(ev2);
  });

  test('DELETE → 204, then the session answers 404', async () => {
    const d = await c.delete();
    assert.equal(d, 204);
    const again = await c.request('tools/list');
    assert.equal(again.status, 404);
    assert.equal(errCode(again), -32600);
    const get = await mcpRequest({ port, path: ROUTE, method: 'GET', session: c.session });
    assert.equal(get.status, 404);
    await get.body();
    assert.equal(await c.delete(), 404);
  });
});

describe('transport errors', () => {
  let c;
  before(async () => {
    c = new McpClient(port, ROUTE);
    await c.initialize();
  });
  after(async () => {
    if (c?.session) await c.delete().catch(() => {});
  });

  test('Accept without text/event-stream → 406', async () => {
    const r = await post(initializeMessage(1), { accept: 'application/json' });
    assert.equal(r.status, 406);
    assert.equal(r.json.jsonrpc, '2.0');
    assert.ok(r.json.error);
    const r2 = await post(initializeMessage(1), { accept: null });
    assert.equal(r2.status, 406);
  });

  test('wrong Content-Type → 415', async () => {
    const r = await post(initializeMessage(1), { contentType: 'text/plain' });
    assert.equal(r.status, 415);
    assert.ok(r.json.error);
  });

  test('invalid JSON → 400 -32700; a non-JSON-RPC object → 400 -32600', async () => {
    const bad = await mcpPost(port, ROUTE, undefined, { rawBody: '{"jsonrpc":"2.0",' });
    assert.equal(bad.status, 400);
    assert.equal(errCode(bad), -32700);
    const notRpc = await post({ hello: 'world' });
    assert.equal(notRpc.status, 400);
    assert.equal(errCode(notRpc), -32600);
    const wrongVersion = await post({ jsonrpc: '1.0', id: 1, method: 'ping' }, c.opts());
    assert.equal(wrongVersion.status, 400);
    assert.equal(errCode(wrongVersion), -32600);
  });

  test('a request without session → 400; an unknown session → 404', async () => {
    const r = await post({ jsonrpc: '2.0', id: 9, method: 'tools/list' });
    assert.equal(r.status, 400);
    assert.ok(r.json.error);
    const u = await post({ jsonrpc: '2.0', id: 9, method: 'tools/list' }, { session: 'A'.repeat(43) });
    assert.equal(u.status, 404);
    assert.ok(u.json.error);
  });

  test('MCP-Protocol-Version 1999-01-01 → 400; another supported version than the negotiated one is accepted', async () => {
    const r = await post({ jsonrpc: '2.0', id: 9, method: 'tools/list' }, { session: c.session, protocolVersion: '1999-01-01' });
    assert.equal(r.status, 400);
    // The spec asks 400 only for invalid or unsupported versions; the official
    // conformance suite sends a supported, different one and expects an answer.
    const r2 = await post({ jsonrpc: '2.0', id: 9, method: 'tools/list' }, { session: c.session, protocolVersion: '2025-06-18' });
    assert.equal(r2.status, 200, r2.text);
    // The session still works with the right version.
    const ok = await c.request('ping');
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json.result, {});
  });

  test('2026-07-28 requests → 400 with a plain error that is none of -32020…-32022', async () => {
    const checks = [
      post({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { protocolVersion: '2026-07-28' }),
      post({ jsonrpc: '2.0', id: 1, method: 'server/discover', params: {} }, { protocolVersion: '2026-07-28' }),
      post({
        jsonrpc: '2.0', id: 1, method: 'tools/list',
        params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} } },
      }),
      post({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { protocolVersion: '2027-01-01' }),
    ];
    for (const r of await Promise.all(checks)) {
      assert.equal(r.status, 400, r.text);
      const code = errCode(r);
      assert.equal(typeof code, 'number', `no JSON-RPC error: ${r.text}`);
      assert.ok(code > -32020 || code < -32022, `a modern error code ${code} stops dual-era clients from falling back`);
    }
  });

  test('batches: answered under 2025-03-26 (header or none), 400 under 2025-06-18', async () => {
    const old = new McpClient(port, ROUTE, { protocolVersion: '2025-03-26' });
    await old.initialize();
    assert.equal(old.version, '2025-03-26');
    try {
      const batch = [
        { jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'add', arguments: { a: 1, b: 2 } } },
        { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'none', progress: 1 } },
        { jsonrpc: '2.0', id: 'b', method: 'ping' },
      ];
      for (const protocolVersion of ['2025-03-26', undefined]) {
        const r = await post(batch, { session: old.session, protocolVersion });
        assert.equal(r.status, 200, `batch with header ${protocolVersion}: ${r.text}`);
        const answers = r.json ? r.json : r.messages;
        assert.ok(Array.isArray(answers), `batch answer is not an array or stream: ${r.text}`);
        const byId = Object.fromEntries(answers.filter((m) => m.id !== undefined).map((m) => [m.id, m]));
        assert.equal(toolText(byId.a), '3');
        assert.deepEqual(byId.b.result, {});
      }
    } finally {
      await old.delete();
    }
    const mid = new McpClient(port, ROUTE, { protocolVersion: '2025-06-18' });
    await mid.initialize();
    assert.equal(mid.version, '2025-06-18');
    try {
      const r = await post([{ jsonrpc: '2.0', id: 1, method: 'ping' }, { jsonrpc: '2.0', id: 2, method: 'ping' }], mid.opts());
      assert.equal(r.status, 400);
      assert.equal(errCode(r), -32600);
    } finally {
      await mid.delete();
    }
  });

  test('Origin: https://evil.example → 403; Origin equal to public_url → allowed', async () => {
    const evil = await post(initializeMessage(1), { origin: 'https://evil.example' });
    assert.equal(evil.status, 403);
    assert.ok(evil.json.error, evil.text);
    assert.equal(evil.headers['mcp-session-id'], undefined);
    const evilGet = await mcpRequest({ port, path: ROUTE, method: 'GET', session: c.session, origin: 'https://evil.example' });
    assert.equal(evilGet.status, 403);
    await evilGet.body();
    const ok = await post(initializeMessage(1), { origin: `http://127.0.0.1:${port}` });
    assert.equal(ok.status, 200, ok.text);
    const sid = ok.headers['mcp-session-id'];
    assert.ok(sid);
    const d = await mcpRequest({ port, path: ROUTE, method: 'DELETE', session: sid, origin: `http://127.0.0.1:${port}` });
    assert.equal(d.status, 204);
  });
});

describe('requests in a session', () => {
  let c;
  before(async () => {
    c = new McpClient(port, ROUTE);
    await c.initialize();
  });
  after(async () => {
    if (c?.session) await c.delete().catch(() => {});
  });

  test('notifications/cancelled ends a pending JSON request with -32800 at once, and an SSE one without a response', async () => {
    const pending = c.start(toolCall(300, 'slow', { seconds: 10, steps: 1 }));
    await sleep(150);
    const t0 = Date.now();
    const n = await c.notify('notifications/cancelled', { requestId: 300, reason: 'test' });
    assert.equal(n.status, 202);
    const j = await (await pending).json();
    assert.ok(Date.now() - t0 < 2000, 'the cancelled request was not answered promptly');
    assert.equal(j.id, 300);
    assert.equal(j.error?.code, -32800);

    const r = await c.start(toolCall(301, 'slow', { seconds: 10, steps: 10 }, 'cancel-me'));
    assert.equal((await r.sse.next(5000)).data, '');
    assert.equal(eventJson(await r.sse.next(5000)).params.progress, 1);
    await c.notify('notifications/cancelled', { requestId: 301 });
    const rest = await r.sse.rest(3000);
    assert.ok(!rest.map(eventJson).some((m) => m?.id === 301 && m.result), 'a cancelled request still got a result');
    // The session goes on.
    assert.equal(toolText((await c.callTool('echo', { text: 'after cancel' })).response), 'after cancel');
  });

  // MCP asks clients never to reuse an id in a session; a load generator replaying one body
  // does. The child must still see every id and token in flight once (README "The MCP endpoint").
  test('two requests in flight with the same id and progress token each get their own progress and answer', async () => {
    const first = await c.start(toolCall(400, 'slow', { seconds: 1.5, steps: 3 }, 'tok'));
    assert.equal(first.status, 200);
    assert.equal((await first.sse.next(5000)).data, '');
    const p1 = eventJson(await first.sse.next(5000));
    assert.deepEqual([p1.params.progressToken, p1.params.total], ['tok', 3]);
    const second = await c.start(toolCall(400, 'slow', { seconds: 0.2, steps: 2 }, 'tok'));
    assert.equal(second.status, 200);
    const rest2 = (await second.sse.rest(5000)).filter((e) => e.data).map(eventJson);
    const rest1 = (await first.sse.rest(5000)).filter((e) => e.data).map(eventJson);
    for (const [events, steps] of [[rest1, 3], [rest2, 2]]) {
      const progress = events.filter((m) => m.method === 'notifications/progress');
      assert.ok(progress.length >= 1, JSON.stringify(events));
      for (const m of progress) assert.deepEqual([m.params.progressToken, m.params.total], ['tok', steps], JSON.stringify(m));
      const answers = events.filter((m) => 'result' in m || 'error' in m);
      assert.equal(answers.length, 1, JSON.stringify(events));
      assert.equal(answers[0].id, 400);
      assert.match(toolText(answers[0]), new RegExp(`^done: waited [0-9.]+ s in ${steps} steps$`));
    }
  });

  test('a batch with one id twice gets both answers; a cancel names the older of two such requests', async () => {
    const old = new McpClient(port, ROUTE, { protocolVersion: '2025-03-26' }); // batches
    await old.initialize();
    try {
      const b = await post([toolCall(410, 'echo', { text: 'a' }), toolCall(410, 'echo', { text: 'b' })], old.opts());
      assert.equal(b.status, 200, b.text);
      assert.deepEqual(b.json.map((m) => [m.id, toolText(m)]).sort(), [[410, 'a'], [410, 'b']]);
    } finally {
      await old.delete();
    }

    const older = await c.start(toolCall(411, 'slow', { seconds: 10, steps: 20 }, 'p411a'));
    assert.equal((await older.sse.next(5000)).data, '');
    const newer = await c.start(toolCall(411, 'slow', { seconds: 1, steps: 4 }, 'p411b'));
    assert.equal((await newer.sse.next(5000)).data, ''); // both are in flight now, in this order
    assert.equal((await c.notify('notifications/cancelled', { requestId: 411 })).status, 202);
    const cancelled = (await older.sse.rest(5000)).filter((e) => e.data).map(eventJson);
    assert.ok(older.sse.ended, 'the cancelled request\'s stream did not end');
    assert.ok(!cancelled.some((m) => 'result' in m), `the cancelled request got a result: ${JSON.stringify(cancelled)}`);
    const answers = (await newer.sse.rest(5000)).filter((e) => e.data).map(eventJson).filter((m) => 'result' in m);
    assert.equal(answers.length, 1);
    assert.equal(answers[0].id, 411);
    assert.match(toolText(answers[0]), /^done/);

    // Once the older is answered, the id names the other, which the child knows by the
    // gateway's id: the cancel reaches it (the child stops, so none of its progress is left
    // to land on the next stream).
    const a = await c.start(toolCall(413, 'slow', { seconds: 1, steps: 10 }, 'p413a'));
    assert.equal((await a.sse.next(5000)).data, '');
    const b = await c.start(toolCall(413, 'slow', { seconds: 10, steps: 20 }, 'p413b'));
    assert.equal((await b.sse.next(5000)).data, '');
    assert.ok((await a.sse.rest(5000)).some((e) => e.data && eventJson(e).id === 413));
    assert.equal((await c.notify('notifications/cancelled', { requestId: 413 })).status, 202);
    assert.ok(!(await b.sse.rest(5000)).some((e) => e.data && 'result' in eventJson(e)));
    const next = await c.start(toolCall(414, 'slow', { seconds: 1, steps: 2 }, 'p414'));
    const seen = (await next.sse.rest(5000)).filter((e) => e.data).map(eventJson);
    assert.deepEqual(seen.map((m) => m.params?.progressToken ?? m.id), ['p414', 'p414', 414], JSON.stringify(seen));
  });

  test('a 1 MiB message goes to the child and back', async () => {
    const text = 'z'.repeat(1024 * 1024);
    const r = await c.callTool('echo', { text });
    assert.equal(r.status, 200);
    assert.equal(toolText(r.response), text);
  });

  test('concurrent requests on separate POSTs are answered on their own connections', async () => {
    const calls = [1, 2, 3, 4, 5].map((i) => c.callTool('add', { a: i, b: 100 }));
    const answers = await Promise.all(calls);
    assert.deepEqual(answers.map((a) => toolText(a.response)), ['101', '102', '103', '104', '105']);
  });

  test('DELETE during a request: the request fails with -32000, the GET stream ends, the child goes', async () => {
    const d = new McpClient(port, ROUTE);
    const before = childPids(gw.pid);
    await d.initialize();
    const child = await newChild(gw.pid, before);
    const g = await mcpRequest({ port, path: ROUTE, method: 'GET', session: d.session, protocolVersion: d.version });
    assert.equal(g.status, 200);
    const pending = d.start(toolCall(500, 'slow', { seconds: 10, steps: 1 }));
    await sleep(150);
    assert.equal(await d.delete(), 204);
    const j = await (await pending).json();
    assert.equal(j.id, 500);
    assert.equal(j.error?.code, -32000);
    assert.ok(await g.sse.waitEnd(3000), 'the GET stream did not end with the session');
    await waitFor(() => !pidExists(child) || procState(child) === 'Z' && !childPids(gw.pid).includes(child),
      { timeoutMs: 8000, what: 'the deleted session\'s child to go' });
  });

  test('the child\'s stderr lines are logged with the session id', async () => {
    const r = await c.callTool('stderr', { text: 'marker-from-the-child' });
    assert.equal(r.status, 200);
    const line = await gw.waitForLog((l) => l.line === 'marker-from-the-child', 3000);
    assert.equal(line.request_id, c.session);
  });
});

describe('GET stream and server requests', () => {
  test('GET opens the SSE stream; a second GET takes it over and the first ends', async () => {
    const c = new McpClient(port, ROUTE);
    await c.initialize();
    try {
      const g1 = await mcpRequest({ port, path: ROUTE, method: 'GET', session: c.session, protocolVersion: c.version });
      assert.equal(g1.status, 200);
      assert.match(g1.contentType, /^text\/event-stream/);
      const g2 = await mcpRequest({ port, path: ROUTE, method: 'GET', session: c.session, protocolVersion: c.version });
      assert.equal(g2.status, 200);
      assert.match(g2.contentType, /^text\/event-stream/);
      assert.ok(await g1.sse.waitEnd(3000), 'the first GET stream did not end when a second GET took over');
      assert.equal(g2.sse.ended, false, 'the new GET stream must stay open');
      // A GET without Accept: text/event-stream is refused.
      const bad = await mcpRequest({ port, path: ROUTE, method: 'GET', session: c.session, accept: 'application/json' });
      assert.equal(bad.status, 406);
      await bad.body();
      assert.equal(g2.sse.ended, false);
      g2.close();
    } finally {
      await c.delete();
    }
  });

  test('sampling: the server request arrives on the POST stream, its answer (POST → 202) completes the tool', async () => {
    const c = new McpClient(port, ROUTE, { capabilities: { sampling: {} } });
    await c.initialize();
    const g = await mcpRequest({ port, path: ROUTE, method: 'GET', session: c.session, protocolVersion: c.version });
    assert.equal(g.status, 200);
    try {
      const r = await c.start(toolCall(10, 'sample', { prompt: 'say hi' }));
      assert.equal(r.status, 200);
      assert.match(r.contentType, /^text\/event-stream/);
      const priming = await r.sse.next(5000);
      assert.equal(priming.data, '');
      const reqEv = await r.sse.next(5000);
      const sreq = eventJson(reqEv);
      assert.equal(sreq.method, 'sampling/createMessage');
      assert.ok(sreq.id !== undefined);
      assert.equal(sreq.params.messages[0].content.text, 'say hi');
      assert.equal(g.sse.received.length, 0, 'the server request went to the GET stream too');

      const ans = await post({ jsonrpc: '2.0', id: sreq.id, result: { role: 'assistant', content: { type: 'text', text: 'hi from the model' }, model: 'test-model' } }, c.opts());
      assert.equal(ans.status, 202);
      const rest = await r.sse.rest(5000);
      const resp = rest.map(eventJson).find((m) => m.id === 10);
      assert.ok(resp, `no tool result on the POST stream: ${JSON.stringify(rest)}`);
      assert.match(toolText(resp), /hi from the model/);
      assert.equal(g.sse.received.length, 0, 'nothing belongs on the GET stream here');
    } finally {
      g.close();
      await c.delete();
    }
  });
});

describe('resumability', () => {
  test('a client that disconnects mid-stream resumes with Last-Event-ID: the rest arrives exactly once', async () => {
    const c = new McpClient(port, ROUTE);
    await c.initialize();
    try {
      const r = await c.start(toolCall(20, 'slow', { seconds: 2, steps: 4 }, 'resume-me'));
      assert.equal(r.status, 200);
      const priming = await r.sse.next(5000);
      assert.equal(priming.data, '');
      const first = await r.sse.next(5000);
      assert.equal(eventJson(first).params.progress, 1);
      r.close(); // client disconnect: the request must go on
      const got = [priming, first];
      await sleep(700); // step 2 happens while nobody listens

      const g = await mcpRequest({ port, path: ROUTE, method: 'GET', session: c.session, protocolVersion: c.version, lastEventId: first.id });
      assert.equal(g.status, 200);
      assert.match(g.contentType, /^text\/event-stream/);
      const rest = await g.sse.rest(8000);
      const all = [...got, ...rest];
      const ids = all.map((e) => e.id);
      assert.equal(new Set(ids).size, ids.length, `duplicate events: ${ids}`);
      const msgs = rest.map(eventJson);
      assert.deepEqual(msgs.filter((m) => m?.method === 'notifications/progress').map((m) => m.params.progress), [2, 3, 4],
        `resumed events: ${JSON.stringify(rest)}`);
      assert.equal(msgs[msgs.length - 1].id, 20, 'the response must come last');
      assert.match(toolText(msgs[msgs.length - 1]), /^done/);
    } finally {
      await c.delete();
    }
  });

  test('resuming after the request finished replays what followed and ends the stream', async () => {
    const c = new McpClient(port, ROUTE);
    await c.initialize();
    try {
      const r = await c.start(toolCall(21, 'slow', { seconds: 0.5, steps: 2 }, 'later'));
      const priming = await r.sse.next(5000);
      r.close();
      await sleep(900);
      const g = await mcpRequest({ port, path: ROUTE, method: 'GET', session: c.session, protocolVersion: c.version, lastEventId: priming.id });
      assert.equal(g.status, 200);
      const rest = await g.sse.rest(5000);
      const msgs = rest.map(eventJson);
      assert.deepEqual(msgs.map((m) => m.method || m.id), ['notifications/progress', 'notifications/progress', 21]);
      assert.ok(g.sse.ended);
    } finally {
      await c.delete();
    }
  });
});

describe('2024-11-05 HTTP+SSE transport', () => {
  test('GET /sse → endpoint event; POSTs → 202, answers as message events; closing the SSE ends the session', async () => {
    const before = childPids(gw.pid);
    const s = await mcpRequest({ port, path: `${ROUTE}/sse`, method: 'GET' });
    assert.equal(s.status, 200);
    assert.match(s.contentType, /^text\/event-stream/);
    const endpoint = await s.sse.next(5000);
    assert.equal(endpoint.event, 'endpoint');
    assert.match(endpoint.data, new RegExp(`^${ROUTE}/messages\\?session_id=[\\x21-\\x7e]{43,}$`));
    const child = await newChild(gw.pid, before);

    const send = (body) => mcpPost(port, endpoint.data, body, { accept: ACCEPT_BOTH });
    const nextMessage = async () => {
      for (;;) {
        const ev = await s.sse.next(5000);
        assert.ok(ev, 'the SSE stream ended early');
        if (!ev.data) continue;
        assert.equal(ev.event, 'message');
        return JSON.parse(ev.data);
      }
    };
    const i = await send(initializeMessage(1, { protocolVersion: '2024-11-05' }));
    assert.equal(i.status, 202);
    const initAnswer = await nextMessage();
    assert.equal(initAnswer.id, 1);
    assert.equal(initAnswer.result.serverInfo.name, 'whoami-server');
    assert.equal((await send({ jsonrpc: '2.0', method: 'notifications/initialized' })).status, 202);
    assert.equal((await send(toolCall(2, 'echo', { text: 'old transport' }))).status, 202);
    const echo = await nextMessage();
    assert.equal(echo.id, 2);
    assert.equal(toolText(echo), 'old transport');
    // An id still in flight, used again: both answers come, each with the id the client sent.
    // The 202 comes once the request is with the child, so the second overlaps the first.
    assert.equal((await send(toolCall(5, 'slow', { seconds: 2, steps: 1 }))).status, 202);
    assert.equal((await send(toolCall(5, 'echo', { text: 'same id' }))).status, 202);
    const both = [await nextMessage(), await nextMessage()].filter((m) => m.id === 5).map(toolText).sort();
    assert.equal(both.length, 2, JSON.stringify(both));
    assert.match(both[0], /^done/);
    assert.equal(both[1], 'same id');

    // Another session id, or none, is refused.
    const other = await mcpPost(port, `${ROUTE}/messages?session_id=${'B'.repeat(43)}`, toolCall(3, 'echo', { text: 'x' }));
    assert.equal(other.status, 404);

    s.close();
    await waitFor(() => !childPids(gw.pid).includes(child) && (!pidExists(child) || procState(child) !== 'Z'),
      { timeoutMs: 8000, what: `the legacy session's child ${child} to be gone` });
    const after = await send(toolCall(4, 'echo', { text: 'x' }));
    assert.equal(after.status, 404);
  });
});

describe('the child environment', () => {
  test('stdio.nice: 7 → the child runs 7 above the gateway\'s niceness; without it, at the gateway\'s', async () => {
    const base = procNice(gw.pid);
    for (const [path, add] of [['/mcp/nice', 7], [ROUTE, 0]]) {
      const before = childPids(gw.pid);
      const c = new McpClient(port, path);
      await c.initialize();
      try {
        const child = await newChild(gw.pid, before);
        assert.equal(procNice(child), Math.min(19, base + add), `the child of ${path}`);
        assert.equal(toolText((await c.callTool('echo', { text: 'nice' })).response), 'nice');
      } finally {
        await c.delete();
      }
    }
  });

  test('route env, env_passthrough and MCP_USER_* only; the gateway environment is not visible', async () => {
    const c = new McpClient(port, ROUTE);
    await c.initialize();
    try {
      const r = await c.callTool('env_dump');
      assert.equal(r.status, 200);
      const names = r.json.result.structuredContent.names;
      const allowed = new Set(['FOO', 'EMPTY_ONE', 'PASS_ME']);
      const identity = /^MCP_(USER_[A-Z_]+|SCOPES|CLIENT_ID|IDENTITY_JWT)$/;
      for (const n of names) assert.ok(allowed.has(n) || identity.test(n), `unexpected variable ${n} in the child: ${names}`);
      for (const n of ['FOO', 'EMPTY_ONE', 'PASS_ME', 'MCP_USER_SUB']) assert.ok(names.includes(n), `${n} missing: ${names}`);
      for (const n of ['SECRET_TEST_VAR', 'PATH', 'HOME', 'ASAN_OPTIONS']) assert.ok(!names.includes(n), `${n} leaked into the child`);

      const who = await c.callTool('whoami');
      assert.equal(who.json.result.structuredContent.env.sub, 'anonymous');
    } finally {
      await c.delete();
    }
  });
});
