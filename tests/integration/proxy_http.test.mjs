// An HTTP route: mcpgate in front of a Streamable HTTP MCP server written
// here with the official SDK (Server + StreamableHTTPServerTransport on
// node:http, 127.0.0.1). Sessions come from the upstream, SSE passes through
// in order, and only MCP's own headers plus the gateway's identity headers
// reach the upstream. README "HTTP routes"; checklist §1.8.4, §3, §6.3.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { gatewayConfig, sleep, startGateway, waitFor } from '../lib/harness.mjs';
import {
  CONFORMANCE_DIR, McpClient, ensureNpmDeps, eventJson, initializeMessage, mcpPost, mcpRequest, routesYaml, toolCall, toolText,
} from '../lib/mcp.mjs';

const ROUTE = '/mcp/remote';
const SDK = path.join(CONFORMANCE_DIR, 'node_modules', '@modelcontextprotocol', 'sdk', 'dist', 'esm');
const sdk = (p) => import(pathToFileURL(path.join(SDK, p)).href);

let upstream; // {port, server, sessions: Map, seen: [] (headers of every request)}
let gw;
let port;

/** The upstream MCP server: tools headers, progress, echo. */
async function startUpstream() {
  const { Server } = await sdk('server/index.js');
  const { StreamableHTTPServerTransport } = await sdk('server/streamableHttp.js');
  const { CallToolRequestSchema, ListToolsRequestSchema } = await sdk('types.js');
  const sessions = new Map();
  const seen = [];
  const issued = [];

  const newServer = () => {
    const s = new Server({ name: 'http-upstream', version: '1.0.0' }, { capabilities: { tools: {}, logging: {} } });
    s.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: [
        { name: 'headers', description: 'the request headers seen', inputSchema: { type: 'object', properties: {} } },
        { name: 'progress', description: 'progress notifications', inputSchema: { type: 'object', properties: { steps: { type: 'integer' } } } },
        { name: 'echo', description: 'echo', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
        { name: 'broadcast', description: 'notifications of these sizes on the GET stream', inputSchema: { type: 'object', properties: { sizes: { type: 'array' } } } },
      ],
    }));
    s.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
      const { name, arguments: args = {} } = req.params;
      if (name === 'headers') {
        return { content: [{ type: 'text', text: JSON.stringify(extra.requestInfo?.headers || {}) }] };
      }
      if (name === 'echo') return { content: [{ type: 'text', text: String(args.text) }] };
      if (name === 'broadcast') {
        // Not related to the request: the SDK sends these on the session's standalone GET stream.
        for (const [i, n] of (args.sizes || []).entries()) {
          await s.notification({ method: 'notifications/message', params: { level: 'info', data: `${i}:${String.fromCharCode(97 + (i % 26)).repeat(n)}` } });
        }
        return { content: [{ type: 'text', text: 'sent' }] };
      }
      if (name === 'progress') {
        const steps = args.steps || 5;
        const token = req.params._meta?.progressToken;
        for (let i = 1; i <= steps; i++) {
          if (token !== undefined) {
            await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: steps } });
          }
          await sleep(30);
        }
        return { content: [{ type: 'text', text: `progress done: ${steps}` }] };
      }
      throw new Error(`Unknown tool: ${name}`);
    });
    return s;
  };

  const server = http.createServer(async (req, res) => {
    seen.push({ method: req.method, headers: req.headers });
    try {
      const sid = req.headers['mcp-session-id'];
      if (sid) {
        const t = sessions.get(sid);
        if (!t) {
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
          return;
        }
        await t.handleRequest(req, res);
        return;
      }
      const t = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => {
          const id = randomUUID();
          issued.push(id);
          return id;
        },
        onsessioninitialized: (id) => sessions.set(id, t),
      });
      t.onclose = () => {
        if (t.sessionId) sessions.delete(t.sessionId);
      };
      await newServer().connect(t);
      await t.handleRequest(req, res);
    } catch (e) {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32603, message: String(e) } }));
      }
    }
  });
  let connections = 0;
  server.on('connection', () => connections++);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port, server, sessions, seen, issued, connections: () => connections,
    async stop() {
      for (const t of sessions.values()) await t.close().catch(() => {});
      server.closeAllConnections?.();
      await new Promise((r) => server.close(() => r()));
    },
  };
}

before(async () => {
  const err = ensureNpmDeps();
  if (err) throw new Error(`the SDK for the upstream server is not installed: ${err}`);
  upstream = await startUpstream();
  gw = await startGateway({
    config: ({ port: p }) => gatewayConfig({
      port: p,
      extra: routesYaml([{ name: 'remote', path: ROUTE, auth: 'none', http: { url: `http://127.0.0.1:${upstream.port}/mcp` } }]),
    }),
  });
  port = gw.port;
});

after(async () => {
  if (gw) assert.equal(await gw.stop(), 0);
  if (upstream) await upstream.stop();
});

describe('Streamable HTTP upstream through mcpgate', () => {
  let c;

  test('initialize, tools/list and tools/call work; Mcp-Session-Id is the upstream\'s', async () => {
    c = new McpClient(port, ROUTE);
    const init = await c.initialize();
    assert.equal(init.status, 200);
    assert.equal(init.response.result.serverInfo.name, 'http-upstream');
    assert.ok(c.session);
    assert.ok(upstream.issued.includes(c.session), `session ${c.session} is not one the upstream issued (${upstream.issued})`);
    assert.ok(upstream.sessions.has(c.session));
    const list = await c.request('tools/list');
    assert.equal(list.status, 200);
    assert.deepEqual(list.response.result.tools.map((t) => t.name), ['headers', 'progress', 'echo', 'broadcast']);
    const echo = await c.callTool('echo', { text: 'through the gateway' });
    assert.equal(toolText(echo.response), 'through the gateway');
  });

  test('SSE progress events pass through in order, then the response', async () => {
    const r = await c.start(toolCall(77, 'progress', { steps: 5 }, 'http-tok'));
    assert.equal(r.status, 200);
    assert.match(r.contentType, /^text\/event-stream/);
    assert.equal(r.headers['x-accel-buffering'], 'no');
    const arrivals = [];
    const events = [];
    for (;;) {
      const ev = await r.sse.next(5000);
      if (ev === null) break;
      arrivals.push(Date.now());
      events.push(ev);
    }
    const msgs = events.filter((e) => e.data).map(eventJson);
    const progress = msgs.filter((m) => m.method === 'notifications/progress');
    assert.deepEqual(progress.map((m) => m.params.progress), [1, 2, 3, 4, 5]);
    for (const m of progress) assert.equal(m.params.progressToken, 'http-tok');
    const last = msgs[msgs.length - 1];
    assert.equal(last.id, 77);
    assert.equal(toolText(last), 'progress done: 5');
    // Streamed, not buffered whole: the events did not all arrive at once.
    const dataArrivals = arrivals.filter((_, i) => events[i].data);
    assert.ok(dataArrivals[dataArrivals.length - 1] - dataArrivals[0] >= 60, 'the SSE events arrived in one burst (buffered?)');
  });

  test('Authorization, Cookie and client X-MCP-* never reach the upstream; the gateway\'s identity headers do', async () => {
    const r = await mcpPost(port, ROUTE, toolCall(78, 'headers'), {
      ...c.opts(),
      headers: {
        authorization: 'Bearer client-token-must-not-leak',
        cookie: 'session=must-not-leak',
        'x-mcp-user-sub': 'admin',
        'x-mcp-user-roles': 'admin',
        'x-mcp-identity': 'forged',
        'x-mcp-custom': 'forged',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        'x-forwarded-for': '203.0.113.9',
        'user-agent': 'mcpgate-tests/1',
        'x-request-id': 'req-proxy-http-1',
      },
    });
    assert.equal(r.status, 200);
    const h = JSON.parse(toolText(r.response));
    assert.equal(h.authorization, undefined, 'Authorization reached the upstream');
    assert.equal(h.cookie, undefined, 'Cookie reached the upstream');
    assert.equal(h['proxy-authorization'], undefined);
    assert.equal(h['x-mcp-custom'], undefined, 'a client X-MCP-* header reached the upstream');
    assert.equal(h['x-mcp-identity'], undefined, 'a client X-MCP-Identity reached the upstream');
    assert.equal(h['x-mcp-user-sub'], 'anonymous', `X-MCP-User-Sub: ${h['x-mcp-user-sub']}`);
    assert.notEqual(h['x-mcp-user-roles'], 'admin');
    assert.ok(!String(h['x-mcp-user-roles'] || '').includes('admin'));
    assert.equal(h['mcp-session-id'], c.session);
    assert.equal(h['mcp-protocol-version'], c.version);
    assert.equal(h['user-agent'], 'mcpgate-tests/1');
    assert.equal(h['x-request-id'], 'req-proxy-http-1');
    assert.ok(Object.keys(h).some((k) => k.startsWith('x-mcp-user-')), 'no X-MCP-User-* header from the gateway');
    // And on every request the upstream saw, not only this one.
    for (const s of upstream.seen) {
      assert.equal(s.headers.authorization, undefined);
      assert.equal(s.headers.cookie, undefined);
      assert.notEqual(s.headers['x-mcp-user-sub'], 'admin');
    }
  });

  test('GET passes the upstream\'s SSE stream through; an unknown session id → 404', async () => {
    const g = await mcpRequest({ port, path: ROUTE, method: 'GET', session: c.session, protocolVersion: c.version });
    assert.equal(g.status, 200);
    assert.match(g.contentType, /^text\/event-stream/);
    g.close();
    const u = await mcpPost(port, ROUTE, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { session: randomUUID(), protocolVersion: c.version });
    assert.equal(u.status, 404);
    assert.ok(u.json.error);
  });

  test('server-initiated messages on the GET stream arrive whole and in order, small and large (a 1 KiB upstream read buffer)', async () => {
    const g = await mcpRequest({ port, path: ROUTE, method: 'GET', session: c.session, protocolVersion: c.version });
    assert.equal(g.status, 200);
    // mcpgate answers the GET only once the upstream answered its own, and the SDK registers
    // its standalone stream before it writes that answer: the broadcast below goes to it.
    const sizes = [3, 200 * 1024, 1, 1023, 1024, 1025, 70 * 1024, 5];
    const call = await c.callTool('broadcast', { sizes });
    assert.equal(toolText(call.response), 'sent', `broadcast: HTTP ${call.status} ${JSON.stringify(call.response).slice(0, 300)}`);
    const got = [];
    while (got.length < sizes.length) {
      const ev = await g.sse.next(10000);
      assert.ok(ev, `the GET stream ended after ${got.length} messages`);
      if (!ev.data) continue; // a priming event
      const m = JSON.parse(ev.data);
      assert.equal(m.method, 'notifications/message');
      got.push(m.params.data);
    }
    g.close();
    assert.deepEqual(got.map((d) => d.length), sizes.map((n, i) => `${i}:`.length + n));
    got.forEach((d, i) => assert.equal(d, `${i}:${String.fromCharCode(97 + (i % 26)).repeat(sizes[i])}`));
  });

  test('large answers stream through; an upstream status (404 for a session it dropped) passes through', async () => {
    const big = 'q'.repeat(3 * 1024 * 1024);
    const e = await c.callTool('echo', { text: big });
    assert.equal(e.status, 200);
    assert.equal(toolText(e.response), big);

    const other = new McpClient(port, ROUTE);
    await other.initialize();
    await upstream.sessions.get(other.session).close(); // the upstream forgets it
    const r = await other.request('tools/list');
    assert.equal(r.status, 404, 'the upstream 404 did not pass through');
    const again = await other.request('tools/list');
    assert.equal(again.status, 404);
  });

  test('DELETE ends the upstream session; afterwards the id answers 404', async () => {
    const status = await c.delete();
    assert.ok(status >= 200 && status < 300, `DELETE → ${status}`);
    assert.ok(!upstream.sessions.has(c.session), 'the upstream session is still open');
    const after = await c.request('tools/list');
    assert.equal(after.status, 404);
  });

  test('Origin is checked on HTTP routes too (403, nothing reaches the upstream)', async () => {
    const n = upstream.seen.length;
    const evil = await mcpPost(port, ROUTE, initializeMessage(1), { origin: 'https://evil.example' });
    assert.equal(evil.status, 403);
    assert.ok(evil.json.error);
    const evilSse = await mcpRequest({ port, path: `${ROUTE}/sse`, method: 'GET', origin: 'https://evil.example' });
    assert.equal(evilSse.status, 403);
    await evilSse.body();
    assert.equal(upstream.seen.length, n, 'a refused request reached the upstream');
  });

  test('2024-11-05 HTTP+SSE in front of the HTTP upstream: endpoint event, 202s, message events; closing ends the upstream session', async () => {
    const before = new Set(upstream.sessions.keys());
    const s = await mcpRequest({ port, path: `${ROUTE}/sse`, method: 'GET' });
    assert.equal(s.status, 200);
    assert.match(s.contentType, /^text\/event-stream/);
    const endpoint = await s.sse.next(5000);
    assert.equal(endpoint.event, 'endpoint');
    assert.match(endpoint.data, new RegExp(`^${ROUTE}/messages\\?session_id=[\\x21-\\x7e]{43,}$`));
    const send = (body) => mcpPost(port, endpoint.data, body);
    const nextMessage = async () => {
      for (;;) {
        const ev = await s.sse.next(5000);
        assert.ok(ev, 'the SSE stream ended early');
        if (!ev.data) continue;
        assert.equal(ev.event, 'message');
        return JSON.parse(ev.data);
      }
    };
    assert.equal((await send(initializeMessage(1, { protocolVersion: '2024-11-05' }))).status, 202);
    const init = await nextMessage();
    assert.equal(init.id, 1);
    assert.equal(init.result.serverInfo.name, 'http-upstream');
    const upstreamSession = [...upstream.sessions.keys()].find((k) => !before.has(k));
    assert.ok(upstreamSession, 'no upstream session was opened');
    assert.equal((await send({ jsonrpc: '2.0', method: 'notifications/initialized' })).status, 202);
    assert.equal((await send(toolCall(2, 'echo', { text: 'old client' }))).status, 202);
    const echo = await nextMessage();
    assert.equal(echo.id, 2);
    assert.equal(toolText(echo), 'old client');
    // Progress passes as message events too, in order, before the result.
    assert.equal((await send(toolCall(3, 'progress', { steps: 3 }, 'legacy-tok'))).status, 202);
    const got = [];
    for (;;) {
      const m = await nextMessage();
      got.push(m);
      if (m.id === 3) break;
    }
    assert.deepEqual(got.filter((m) => m.method === 'notifications/progress').map((m) => m.params.progress), [1, 2, 3]);
    // The identity headers are the gateway's here too.
    assert.equal((await send(toolCall(4, 'headers'))).status, 202);
    const h = JSON.parse(toolText(await nextMessage()));
    assert.equal(h['x-mcp-user-sub'], 'anonymous');
    assert.equal(h['mcp-session-id'], upstreamSession);
    s.close();
    await waitFor(() => !upstream.sessions.has(upstreamSession), { timeoutMs: 5000, what: 'the upstream session to be DELETEd' });
    assert.equal((await send(toolCall(5, 'echo', { text: 'x' }))).status, 404);
  });

  test('transport checks happen before the upstream: 406, 415, 400 -32700', async () => {
    const n = upstream.seen.length;
    const a = await mcpPost(port, ROUTE, initializeMessage(1), { accept: 'application/json' });
    assert.equal(a.status, 406);
    const ct = await mcpPost(port, ROUTE, initializeMessage(1), { contentType: 'text/plain' });
    assert.equal(ct.status, 415);
    const bad = await mcpPost(port, ROUTE, undefined, { rawBody: '{' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, -32700);
    assert.equal(upstream.seen.length, n, 'a refused request reached the upstream');
  });

  test('the gateway keeps its upstream connections across a dip in concurrency (server.limits.outbound_idle_connections)', async () => {
    const k = new McpClient(port, ROUTE);
    await k.initialize();
    // 60 ms each (two progress steps): the calls of a burst overlap at the upstream.
    const burst = () => Promise.all(Array.from({ length: 16 }, () => k.callTool('progress', { steps: 2 })));
    for (const r of await burst()) assert.equal(r.status, 200);
    const afterFirst = upstream.connections();
    for (let i = 0; i < 10; i++) assert.equal((await k.callTool('echo', { text: `one ${i}` })).status, 200);
    for (const r of await burst()) assert.equal(r.status, 200);
    const opened = upstream.connections() - afterFirst;
    // libcurl's default cache (four per transfer in flight) would have closed all but four
    // during the calls one at a time, and the second burst would open them again.
    assert.ok(afterFirst >= 8, `the first burst overlapped (${afterFirst} connections)`);
    assert.ok(opened <= 2, `the second burst opened ${opened} new connections to the upstream (after ${afterFirst})`);
    await k.delete();
  });

});
