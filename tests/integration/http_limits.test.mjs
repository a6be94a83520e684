// Request limits and malformed input through the real binary, with
// server.limits {max_body: 1KiB, max_header: 8KiB}. After every rejection a
// new connection must still get GET /healthz → 200.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { gatewayConfig, parseRawResponse, rawRequest, request, sleep, startGateway, waitFor } from '../lib/harness.mjs';

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

  test('a 2 KiB chunked body answers 413 too', async () => {
    const chunk = 'a'.repeat(2048);
    const r = parseRawResponse(await raw([`POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`]));
    assert.equal(r.status, 413);
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
