// Request limits and malformed input through the real binary, with
// server.limits {max_body: 1KiB, max_header: 8KiB}. After every rejection a
// new connection must still get GET /healthz → 200.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { gatewayConfig, parseMetrics, parseRawResponse, rawRequest, request, sleep, startGateway, waitFor } from '../lib/harness.mjs';
import { McpClient, routesYaml, whoamiRoute } from '../lib/mcp.mjs';

/** tx and rx queue bytes of the IPv4 socket LOCAL → REMOTE port on 127.0.0.1 (/proc/net/tcp). */
function tcpQueues(local, remote) {
  const hex = (p) => p.toString(16).toUpperCase().padStart(4, '0');
  for (const row of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = row.trim().split(/\s+/);
    if (f.length < 5 || f[1] !== `0100007F:${hex(local)}` || f[2] !== `0100007F:${hex(remote)}`) continue;
    const [tx, rx] = f[4].split(':').map((h) => parseInt(h, 16));
    return { tx, rx };
  }
  return { tx: 0, rx: 0 };
}

describe('http limits and malformed requests', () => {
  let gw;
  const raw = (chunks, opts) => rawRequest(gw.port, chunks, { timeoutMs: 3000, ...opts });
  const stillHealthy = async () => {
    const r = await request({ port: gw.port, path: '/healthz', timeoutMs: 2000 });
    assert.equal(r.status, 200, 'the server stopped answering /healthz');
    assert.ok(!gw.exited, 'the gateway exited');
  };

  before(async () => {
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, limits: { max_body: '1KiB', max_header: '8KiB' } }),
    });
  });
  after(async () => {
    if (gw) await gw.stop();
  });

  test('POST with a 2 KiB body answers 413', async () => {
    const body = 'a'.repeat(2048);
    const r = parseRawResponse(await raw([`POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`]));
    assert.equal(r.status, 413);
    await stillHealthy();
  });

  test('a 2 KiB chunked body answers 413 too (to a route that takes POST: /token)', async () => {
    const chunk = 'a'.repeat(2048);
    const r = parseRawResponse(await raw([`POST /token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`]));
    assert.equal(r.status, 413);
    assert.equal(JSON.parse(r.body).error, 'request_too_large');
    await stillHealthy();
  });

  test('a chunked body to a path that does not take POST gets 405 at once, its body never read', async () => {
    const text = await raw([`POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n`], { untilClose: true, timeoutMs: 3000 });
    const r = parseRawResponse(text);
    assert.equal(r.status, 405);
    assert.equal(r.headers.connection, 'close');
    await stillHealthy();
  });

  test('a body of exactly max_body (1024 bytes) passes the limit (405 from the route, not 413)', async () => {
    const r = await request({ port: gw.port, method: 'POST', path: '/healthz', body: 'b'.repeat(1024) });
    assert.equal(r.status, 405);
    await stillHealthy();
  });

  test('a 9000-byte header answers 400', async () => {
    const r = parseRawResponse(await raw([`GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ${'h'.repeat(9000)}\r\n\r\n`]));
    assert.equal(r.status, 400);
    await stillHealthy();
  });

  test('a 10,000-byte URI answers 400', async () => {
    const r = parseRawResponse(await raw([`GET /healthz?${'u'.repeat(10000 - 9)} HTTP/1.1\r\nHost: t\r\n\r\n`]));
    assert.equal(r.status, 400);
    await stillHealthy();
  });

  test('headers below max_header (6,000 bytes) are accepted', async () => {
    const r = await request({ port: gw.port, path: '/healthz', headers: { 'x-pad': 'p'.repeat(6000) } });
    assert.equal(r.status, 200);
  });

  test('a request line sent in two TCP writes answers 200', async () => {
    const text = await raw(['GET /heal', 'thz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'], { pauseMs: 150 });
    const r = parseRawResponse(text);
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { status: 'ok' });
  });

  test('headers trickled byte by byte answer 200', async () => {
    const req = 'GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n';
    const r = parseRawResponse(await raw([...req], { pauseMs: 2, timeoutMs: 5000 }));
    assert.equal(r.status, 200);
  });

  test('a 6,000-byte query string answers 200', async () => {
    const r = await request({ port: gw.port, path: `/healthz?q=${'q'.repeat(6000)}` });
    assert.equal(r.status, 200);
    const line = await gw.waitForLog((l) => l.module === 'access' && l.request_id === r.headers['x-request-id']);
    assert.equal(line.path, '/healthz');
  });

  test('two pipelined requests in one write get two responses in order', async () => {
    const text = await raw([
      'GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: first-1\r\n\r\n' +
        'GET /nope HTTP/1.1\r\nHost: t\r\nX-Request-Id: second-2\r\nConnection: close\r\n\r\n',
    ], { timeoutMs: 3000, untilClose: true });
    const first = text.indexOf('HTTP/1.1 200');
    const second = text.indexOf('HTTP/1.1 404');
    assert.ok(first === 0, `first response is not 200: ${text.slice(0, 200)}`);
    assert.ok(second > first, `no second (404) response: ${text}`);
    assert.match(text.slice(0, second), /X-Request-Id: first-1/);
    assert.match(text.slice(second), /X-Request-Id: second-2/);
  });

  // RFC 9112 §6.3 (5): differing Content-Length fields make the framing
  // invalid; the server MUST answer 400 and close. Framing by the first one
  // and parsing the rest as a new request is a request-smuggling vector behind
  // any proxy that frames by the last one.
  test('conflicting duplicate Content-Length headers answer 400 and close (no smuggled request)', async () => {
    const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n';
    const text = await raw([
      `POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
    ], { untilClose: true, timeoutMs: 2000 });
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [400], `responses: ${statuses.join(', ')}\n${text.slice(0, 600)}`);
    assert.ok(!gw.logs().some((l) => l.path === '/smuggled'), 'the smuggled request was served');
    await stillHealthy();
  });

  test('Transfer-Encoding together with Content-Length answers 400', async () => {
    const text = await raw(['POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n'], { untilClose: true, timeoutMs: 2000 });
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [400], text.slice(0, 600));
    await stillHealthy();
  });

  test('an unknown path answers 404 JSON and DELETE /healthz answers 405 with Allow', async () => {
    const nf = await request({ port: gw.port, path: '/definitely/not/here' });
    assert.equal(nf.status, 404);
    assert.match(nf.body, /"error":"not_found"/);
    const na = await request({ port: gw.port, method: 'DELETE', path: '/healthz' });
    assert.equal(na.status, 405);
    assert.match(na.headers.allow || '', /\bGET\b/);
  });

  const garbage = [
    ['binary junk', [Buffer.from([0x00, 0x01, 0x02, 0xff, 0xfe, 0x80, 0x0d, 0x0a, 0x0d, 0x0a])], 400],
    ['a bare "GET"', ['GET\r\n\r\n'], 400],
    ['"GET / HTTP/9.9"', ['GET / HTTP/9.9\r\nHost: t\r\n\r\n'], 400],
    ['a header line without a colon', ['GET /healthz HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n'], 400],
    ['a negative Content-Length', ['POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n'], 400],
    ['a chunk size that is not hex', ['POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nZZZZ\r\nabc\r\n0\r\n\r\n'], null],
    ['a chunk size that overflows 64 bits', ['POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nabc\r\n'], null],
    ['a huge chunk size (7fffffffffffffff)', ['POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\n' + 'x'.repeat(4096)], null],
    ['an absolute-form request target', ['GET http://t/healthz HTTP/1.1\r\nHost: t\r\n\r\n'], 400],
    ['an unknown method', ['BREW /healthz HTTP/1.1\r\nHost: t\r\n\r\n'], null],
    ['a request line and then a hang-up', ['GET /healthz HTT'], null, { end: true }],
    ['NUL bytes inside the path', ['GET /heal\u0000thz HTTP/1.1\r\nHost: t\r\n\r\n'], null],
    ['a 100 KiB line without CRLF', ['A'.repeat(100 * 1024)], 400],
  ];
  for (const [name, chunks, expect, opts] of garbage) {
    test(`garbage: ${name} gets ${expect ? expect : 'an error or a close'}, and the server keeps serving`, async () => {
      const text = await raw(chunks, { timeoutMs: 2000, ...opts });
      const r = parseRawResponse(text);
      if (expect) assert.equal(r.status, expect, `response: ${text.slice(0, 300)}`);
      else if (text) assert.ok(r.status >= 400 && r.status < 600, `expected an error status, got: ${text.slice(0, 300)}`);
      await stillHealthy();
    });
  }

  test('the gateway exits 0 on SIGTERM with no sanitizer report', async () => {
    assert.equal(await gw.stop(), 0);
    gw = null;
  });
});

describe('connection limits and timeouts', () => {
  let gw;
  before(async () => {
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, limits: { max_connections: 2, request_timeout: '1500ms' } }),
    });
  });
  after(async () => {
    if (gw) await gw.stop();
  });

  /** A keep-alive connection that has had one request answered. */
  async function openKeepAlive() {
    const s = net.connect({ port: gw.port, host: '127.0.0.1' });
    s.on('error', () => {});
    let got = '';
    s.on('data', (d) => (got += d));
    await new Promise((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    s.write('GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n');
    await waitFor(() => got.includes('{"status":"ok"}'), { timeoutMs: 2000, what: 'a keep-alive response' });
    return s;
  }

  test('a partial request is closed after request_timeout (slowloris)', async () => {
    const t0 = Date.now();
    const text = await rawRequest(gw.port, ['GET /heal'], { timeoutMs: 6000 });
    const took = Date.now() - t0;
    assert.ok(took < 4500, `the half-sent request (request_timeout 1500ms) was kept for ${took} ms`);
    assert.ok(took >= 1200, `closed after ${took} ms, before request_timeout (1500ms)`);
    if (text) assert.ok(parseRawResponse(text).status >= 400, text.slice(0, 200));
    assert.equal((await request({ port: gw.port, path: '/healthz' })).status, 200);
  });

  test('max_connections: 2 → a third connection waits until one closes', async () => {
    const a = await openKeepAlive();
    const b = await openKeepAlive();
    try {
      const third = request({ port: gw.port, path: '/healthz', timeoutMs: 5000 }).then((r) => ({ r, at: Date.now() }));
      await sleep(300);
      const closedAt = Date.now();
      a.destroy();
      const { r, at } = await third;
      assert.equal(r.status, 200);
      assert.ok(at >= closedAt, `the third connection was served ${closedAt - at} ms before a slot was free`);
    } finally {
      a.destroy();
      b.destroy();
    }
    // Slots come back: new connections are served again.
    await waitFor(async () => (await request({ port: gw.port, path: '/healthz', timeoutMs: 2000 })).status === 200, {
      timeoutMs: 3000, what: '/healthz after the connections closed',
    });
  });

  test('the gateway exits 0 on SIGTERM with no sanitizer report', async () => {
    assert.equal(await gw.stop(), 0);
    gw = null;
  });
});

// ---- the December review: F3 (413 the client reads), F4 (connections), F13 (smuggling) ----

/** A raw connection that records what arrives and when it closes. */
function openSocket(port, { localAddress, allowHalfOpen = false } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen });
    const st = { s, data: '', closed: false, closedAt: 0, firstDataAt: 0 };
    s.on('data', (d) => {
      if (!st.firstDataAt) st.firstDataAt = Date.now();
      st.data += d.toString('latin1');
    });
    s.on('error', () => {});
    s.on('close', () => {
      st.closed = true;
      st.closedAt = Date.now();
    });
    s.once('connect', () => resolve(st));
    s.once('error', reject);
  });
}

const statusesOf = (text) => [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
const healthy = async (port, opts = {}) => {
  const r = await request({ port, path: '/healthz', timeoutMs: 2000, ...opts });
  assert.equal(r.status, 200, 'the next connection is not served');
};

describe('bodies over a limit: the client reads the 413 (F3)', () => {
  const ROUTE = '/mcp/who';
  let gw;
  before(async () => {
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, extra: routesYaml([whoamiRoute({ path: ROUTE })]) }),
    });
  });
  after(async () => {
    if (gw) await gw.stop();
  });

  const big = 'x'.repeat(16 * 1024 * 1024);
  const stream16MiB = () => new ReadableStream({
    start(c) {
      const mib = new TextEncoder().encode('y'.repeat(1 << 20));
      for (let i = 0; i < 16; i++) c.enqueue(mib);
      c.close();
    },
  });
  const post = (p, body, headers = {}) => fetch(`${gw.url}${p}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body,
    ...(typeof body === 'string' ? {} : { duplex: 'half' }),
  });
  const assertRpc413 = async (r) => {
    assert.equal(r.status, 413);
    assert.match(r.headers.get('x-request-id') || '', /^[0-9a-f]{32}$/);
    assert.equal(r.headers.get('connection'), 'close');
    const j = await r.json();
    assert.equal(j.jsonrpc, '2.0');
    assert.equal(j.id, null);
    assert.equal(j.error.code, -32600);
    assert.match(j.error.message, /exceeds 4194304 bytes/);
  };
  const assertOAuth413 = async (r, limit) => {
    assert.equal(r.status, 413);
    assert.ok(r.headers.get('x-request-id'));
    const j = await r.json();
    assert.equal(j.error, 'request_too_large');
    assert.match(j.error_description, new RegExp(`exceeds ${limit} bytes`));
  };

  test('16 MiB from fetch (Content-Length) to an MCP route: 413 with a JSON-RPC error, not EPIPE', async () => {
    await assertRpc413(await post(ROUTE, big));
    await healthy(gw.port);
  });

  test('16 MiB from fetch, chunked (a stream), to an MCP route: 413 with a JSON-RPC error', async () => {
    await assertRpc413(await post(ROUTE, stream16MiB()));
    await healthy(gw.port);
  });

  test('16 MiB to /register, Content-Length and chunked: 413 {"error":"request_too_large"} at its 64 KiB limit', async () => {
    await assertOAuth413(await post('/register', big), 65536);
    await assertOAuth413(await post('/register', stream16MiB()), 65536);
    await healthy(gw.port);
  });

  test('a route limit applies before the body is read: /token answers a head that announces 100,000 bytes', async () => {
    // Only the head is sent: the answer cannot wait for the body.
    const r = parseRawResponse(await rawRequest(gw.port, ['POST /token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n'], { timeoutMs: 3000 }));
    assert.equal(r.status, 413);
    assert.match(r.body, /exceeds 16384 bytes/);
    assert.ok(!gw.logs().some((l) => l.module === 'oauth' && l.path === '/token'), 'the handler ran');
    await healthy(gw.port);
  });

  test('a chunked body is refused as soon as a chunk-size line passes the route limit', async () => {
    // 0x5000 = 20480 > 16384: refused on the size line, before the chunk's data.
    const r = parseRawResponse(await rawRequest(gw.port, ['POST /token HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5000\r\n'], { timeoutMs: 3000 }));
    assert.equal(r.status, 413);
    assert.equal(JSON.parse(r.body).error, 'request_too_large');
    await healthy(gw.port);
  });

  test('a body within the limit still reaches the MCP route', async () => {
    const init = await post(ROUTE, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }));
    assert.equal(init.status, 200);
    await init.text();
  });

  // While an answer is being sent evhttp reads the socket only to notice a close, and
  // what a pipelining client sends meanwhile waits in the connection's input buffer.
  // Past 64 KiB (plus at most one 256 KiB read) the gateway stops reading and TCP
  // pushes back: the client's bytes pile up in the kernel, not in the gateway.
  test('a client pipelining 64 MiB behind its open SSE stream is pushed back by TCP', async () => {
    const c = new McpClient(gw.port, ROUTE);
    await c.initialize();
    const sock = net.connect(gw.port, '127.0.0.1');
    await once(sock, 'connect');
    let got = '';
    sock.setEncoding('latin1');
    sock.on('data', (d) => (got += d));
    sock.write(`GET ${ROUTE} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\nMcp-Session-Id: ${c.session}\r\nMCP-Protocol-Version: ${c.version}\r\n\r\n`);
    await waitFor(() => got.includes('\r\n\r\n'), { what: 'the head of the SSE stream' });
    assert.match(got, /^HTTP\/1\.1 200 /);
    const line = 'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n';
    const block = line.repeat(Math.ceil(65536 / line.length));
    const total = 64 << 20;
    let closed = false;
    let sockError = null;
    sock.once('close', () => (closed = true));
    sock.on('error', (e) => (sockError = e));
    (async () => {
      while (!closed && sock.bytesWritten < total) {
        if (!sock.write(block)) await Promise.race([once(sock, 'drain'), once(sock, 'close')]);
      }
    })();
    // The client's send queue fills only when the gateway stops reading.
    const clientSide = () => tcpQueues(sock.localPort, gw.port);
    await waitFor(() => clientSide().tx >= 1 << 20 || sock.bytesWritten >= total || closed,
      { timeoutMs: 20000, what: 'the gateway to stop reading or the client to finish' });
    assert.ok(!closed, `the gateway closed the connection${sockError ? `: ${sockError.message}` : ''}`);
    assert.ok(sock.bytesWritten < total, 'the gateway read all 64 MiB');
    // In the kernel: what the client's socket has not sent and the gateway's not read.
    const inKernel = clientSide().tx + tcpQueues(gw.port, sock.localPort).rx;
    const held = sock.bytesWritten - sock.writableLength - inKernel;
    assert.ok(held <= (64 + 256 + 64) << 10, `the gateway holds ${held} bytes of pipelined input`);
    sock.destroy();
    await c.delete();
    await healthy(gw.port);
  });
});

describe('lingering close is bounded in bytes and time', () => {
  let gw;
  before(async () => {
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, limits: { lingering_time: '1500ms', lingering_timeout: '400ms', lingering_bytes: '1MiB' } }),
    });
  });
  after(async () => {
    if (gw) await gw.stop();
  });
  const head = 'POST /token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000\r\n\r\n';

  test('a client that keeps sending slowly is cut off after lingering_time', async () => {
    const st = await openSocket(gw.port, { allowHalfOpen: true });
    st.s.write(head);
    await waitFor(() => st.data.includes('\r\n\r\n{'), { what: 'the 413' });
    assert.equal(parseRawResponse(st.data).status, 413);
    const t413 = Date.now();
    const timer = setInterval(() => !st.closed && st.s.write('a'.repeat(512)), 100);
    try {
      await waitFor(() => st.closed, { timeoutMs: 6000, what: 'the server to close' });
    } finally {
      clearInterval(timer);
      st.s.destroy();
    }
    const took = st.closedAt - t413;
    assert.ok(took >= 1000 && took < 4000, `closed ${took} ms after the 413 (lingering_time 1500ms)`);
    await healthy(gw.port);
  });

  test('a client that sends fast is cut off after lingering_bytes', async () => {
    const st = await openSocket(gw.port, { allowHalfOpen: true });
    st.s.write(head);
    await waitFor(() => st.data.includes('\r\n\r\n{'), { what: 'the 413' });
    let written = 0;
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (!st.closed && !st.s.destroyed && written < 256 * 1024 * 1024) {
        written += chunk.length;
        if (!st.s.write(chunk)) return st.s.once('drain', pump);
      }
    };
    pump();
    await waitFor(() => st.closed, { timeoutMs: 6000, what: 'the server to close' });
    st.s.destroy();
    // 1 MiB read and dropped, plus what the socket buffers on both sides held.
    assert.ok(written < 64 * 1024 * 1024, `${written} bytes accepted before the close`);
    await healthy(gw.port);
  });

  test('a client that stops sending is let go after lingering_timeout (the gauge counts it until then)', async () => {
    // Metrics are on by default at /metrics; the scrape's own connection counts as 1.
    const open = async () => parseMetrics((await request({ port: gw.port, path: '/metrics' })).body).get('mcpgate_http_open_connections');
    await waitFor(async () => (await open()) === 1, { what: 'no other connection open' });
    const st = await openSocket(gw.port, { allowHalfOpen: true });
    st.s.write(head);
    await waitFor(() => st.data.includes('\r\n\r\n{'), { what: 'the 413' });
    const t413 = Date.now();
    assert.equal(await open(), 2, 'the lingering connection is not counted');
    await waitFor(async () => (await open()) === 1, { timeoutMs: 4000, intervalMs: 25, what: 'the lingering close to end' });
    const took = Date.now() - t413;
    assert.ok(took >= 250 && took < 1400, `let go ${took} ms after the 413 (lingering_timeout 400ms)`);
    st.s.destroy();
  });
});

describe('request smuggling (F13): ambiguous framing gets 400 and Connection: close', () => {
  let gw;
  before(async () => {
    gw = await startGateway({ config: ({ port }) => gatewayConfig({ port }) });
  });
  after(async () => {
    if (gw) await gw.stop();
  });
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n';
  const n = smuggled.length;
  const post = (framing, body = '0\r\n\r\n') => `POST /token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n${framing}\r\n${body}${smuggled}`;
  const cases = [
    ['Transfer-Encoding together with Content-Length', post(`Content-Length: 5\r\nTransfer-Encoding: chunked\r\n`)],
    ['Transfer-Encoding: gzip, chunked', post('Transfer-Encoding: gzip, chunked\r\n')],
    ['Transfer-Encoding: identity', post('Transfer-Encoding: identity\r\n', '')],
    ['Transfer-Encoding: chunked, chunked', post('Transfer-Encoding: chunked, chunked\r\n')],
    ['two Transfer-Encoding headers', post('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n')],
    ['Transfer-Encoding on an HTTP/1.0 request', `POST /token HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`],
    ['Content-Length: +N', post(`Content-Length: +${n}\r\n`, '')],
    ['Content-Length: " N" (whitespace inside the value)', post(`Content-Length:  ${n}\r\n`, '')],
    ['Content-Length: N,N', post(`Content-Length: ${n},${n}\r\n`, '')],
    ['Content-Length in hex', post(`Content-Length: 0x${n.toString(16)}\r\n`, '')],
    ['Content-Length with whitespace before the colon', post(`Content-Length : ${n}\r\n`, '')],
    ['GET with a Content-Length body', `GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: ${n}\r\n\r\n${smuggled}`],
    ['HEAD with a Content-Length body', `HEAD /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: ${n}\r\n\r\n${smuggled}`],
    ['DELETE with a chunked body', `DELETE /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${n.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`],
    ['OPTIONS with a Content-Length body', `OPTIONS /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: ${n}\r\n\r\n${smuggled}`],
    ['obsolete line folding', `GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n${smuggled}`],
    ['a bare CR inside a header line', `GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: b\rContent-Length: ${n}\r\n\r\n${smuggled}`],
  ];
  for (const [name, text] of cases) {
    test(`${name}: 400, Connection: close, nothing smuggled, the next connection works`, async () => {
      const got = await rawRequest(gw.port, [text], { untilClose: true, timeoutMs: 3000 });
      assert.deepEqual(statusesOf(got), [400], got.slice(0, 600));
      const r = parseRawResponse(got);
      assert.equal(r.headers.connection, 'close');
      assert.ok(r.headers['x-request-id'], 'no X-Request-Id');
      if (!text.startsWith('HEAD')) assert.equal(JSON.parse(r.body).error, 'invalid_request');
      assert.ok(!gw.logs().some((l) => l.path === '/smuggled'), 'the smuggled request was served');
      await healthy(gw.port);
    });
  }

  test('what stays allowed: Transfer-Encoding in any case, Content-Length: 0 on GET, Content-Length:N without a space', async () => {
    const te = parseRawResponse(await rawRequest(gw.port, ['POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n'], { timeoutMs: 3000 }));
    assert.equal(te.status, 405); // framed fine; the route takes GET only
    const get0 = parseRawResponse(await rawRequest(gw.port, ['GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n'], { timeoutMs: 3000 }));
    assert.equal(get0.status, 200);
    const tight = parseRawResponse(await rawRequest(gw.port, ['GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length:0\r\n\r\n'], { timeoutMs: 3000 }));
    assert.equal(tight.status, 200);
  });
});

describe('deadlines: a slow drip gets 408 and is closed (F4)', () => {
  let gw;
  before(async () => {
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, limits: { header_timeout: '500ms', body_timeout: '500ms' } }),
    });
  });
  after(async () => {
    if (gw) await gw.stop();
  });

  test('headers dripped a byte every 100 ms: 408 at header_timeout (a total, not a gap), then closed', async () => {
    const t0 = Date.now();
    const drip = [...'GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ' + 's'.repeat(200)];
    const got = await rawRequest(gw.port, drip, { pauseMs: 100, untilClose: true, timeoutMs: 8000 });
    const took = Date.now() - t0;
    const r = parseRawResponse(got);
    assert.equal(r.status, 408, got.slice(0, 300));
    assert.equal(r.headers.connection, 'close');
    assert.equal(JSON.parse(r.body).error, 'request_timeout');
    assert.ok(took >= 400 && took < 4000, `closed after ${took} ms (header_timeout 500ms)`);
    await healthy(gw.port);
  });

  test('a Content-Length body dripped: 408 at body_timeout', async () => {
    const t0 = Date.now();
    const head = 'POST /token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n';
    const got = await rawRequest(gw.port, [head, ...'a'.repeat(100)], { pauseMs: 100, untilClose: true, timeoutMs: 8000 });
    const took = Date.now() - t0;
    const r = parseRawResponse(got);
    assert.equal(r.status, 408, got.slice(0, 300));
    assert.match(JSON.parse(r.body).error_description, /body not complete within 500 ms/);
    assert.ok(took < 4000, `closed after ${took} ms (body_timeout 500ms)`);
    await healthy(gw.port);
  });

  test('a chunked body dripped: 408 at body_timeout', async () => {
    const head = 'POST /token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n';
    const got = await rawRequest(gw.port, [head, ...Array(50).fill('1\r\na\r\n')], { pauseMs: 100, untilClose: true, timeoutMs: 8000 });
    assert.equal(parseRawResponse(got).status, 408, got.slice(0, 300));
    await healthy(gw.port);
  });

  test('a connection that sends nothing is closed after header_timeout, without an answer', async () => {
    const st = await openSocket(gw.port);
    const t0 = Date.now();
    await waitFor(() => st.closed, { timeoutMs: 4000, what: 'the idle connection to be closed' });
    assert.equal(st.data, '');
    assert.ok(st.closedAt - t0 >= 350, `closed after ${st.closedAt - t0} ms`);
  });
});

describe('max_connections_per_ip counts TCP peers from accept (F4)', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('past the cap, idle connections from 127.0.0.1 are closed at once; 127.0.0.2 is served; a closed one frees a slot', async () => {
    gw = await startGateway({ config: ({ port }) => gatewayConfig({ port, limits: { max_connections_per_ip: 3 } }) });
    const idle = [await openSocket(gw.port), await openSocket(gw.port), await openSocket(gw.port)];
    const extra = await openSocket(gw.port);
    await waitFor(() => extra.closed, { timeoutMs: 3000, what: 'the 4th connection to be refused' });
    assert.equal(extra.data, '', 'the refused connection got bytes');
    assert.ok(idle.every((s) => !s.closed), 'an admitted connection was closed');
    await healthy(gw.port, { localAddress: '127.0.0.2' });
    await assert.rejects(request({ port: gw.port, path: '/healthz', timeoutMs: 2000 }));
    idle[0].s.destroy();
    await waitFor(async () => (await request({ port: gw.port, path: '/healthz', timeoutMs: 1000 }).catch(() => ({}))).status === 200, {
      timeoutMs: 3000, what: 'a slot to free up',
    });
    for (const s of idle) s.s.destroy();
    await waitFor(() => gw.logs().some((l) => l.msg === 'connection refused: too many from one client address' && l.client_ip === '127.0.0.1'), { what: 'the refusal log line' });
    assert.equal(await gw.stop(), 0);
    gw = null;
  });

  test('a trusted proxy is not counted (its clients are many)', async () => {
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, limits: { max_connections_per_ip: 2 } })
        .replace('server:\n', 'server:\n  trusted_proxies: [127.0.0.1/32]\n'),
    });
    const idle = [await openSocket(gw.port), await openSocket(gw.port), await openSocket(gw.port)];
    await healthy(gw.port);
    assert.ok(idle.every((s) => !s.closed));
    for (const s of idle) s.s.destroy();
  });
});

/** CPU time (user + system) of PID in ms, from /proc/PID/stat (clock ticks of 10 ms). */
function cpuMs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10; // utime, stime (fields 14 and 15)
}

describe('accept() out of descriptors (EMFILE) pauses accepting (F4)', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('under ulimit -n 64: no busy loop, one log line per pause, still serving, recovers', async () => {
    // Idle connections must stay open for the whole test (no header_timeout
    // freeing descriptors), and the backlog must keep connections waiting.
    gw = await startGateway({ nofile: 64, config: ({ port }) => gatewayConfig({ port, limits: { header_timeout: '10m' } }) });
    const socks = [];
    const pausedLines = () => gw.logs().filter((l) => l.msg === 'accept() failed: new connections wait a moment').length;
    try {
      for (let i = 0; i < 90 && pausedLines() === 0; i++) socks.push(await openSocket(gw.port));
      await waitFor(() => pausedLines() > 0, { what: 'accept() to fail with EMFILE' });
      for (let i = 0; i < 16; i++) socks.push(await openSocket(gw.port)); // wait in the backlog
      const line = gw.logs().find((l) => l.msg === 'accept() failed: new connections wait a moment');
      assert.match(line.error, /Too many open files/);
      const n0 = pausedLines();
      const cpu0 = cpuMs(gw.pid);
      const t0 = Date.now();
      await waitFor(() => pausedLines() >= n0 + 3, { timeoutMs: 5000, what: 'three more pauses' });
      const cpu = cpuMs(gw.pid) - cpu0;
      const wall = Date.now() - t0;
      assert.ok(cpu < wall * 0.3, `${cpu} ms of CPU in ${wall} ms while out of descriptors (a spin)`);
      assert.ok(pausedLines() <= n0 + 3 + Math.ceil(wall / 200), 'more than one log line per pause');
      // An accepted connection is still served meanwhile.
      socks[0].s.write('GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n');
      await waitFor(() => socks[0].data.includes('{"status":"ok"}'), { what: 'an answer while out of descriptors' });
    } finally {
      for (const s of socks) s.s.destroy();
    }
    await waitFor(async () => (await request({ port: gw.port, path: '/healthz', timeoutMs: 1000 }).catch(() => ({}))).status === 200, {
      timeoutMs: 5000, what: 'new connections to be served again',
    });
    assert.equal(await gw.stop(), 0);
    gw = null;
  });
});
