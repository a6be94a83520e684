// The HTTP surface of the foundation through the real binary: /healthz,
// /readyz, /metrics, X-Request-Id, the access log, 404 and 405.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { freePort, gatewayConfig, parseMetrics, parseRawResponse, rawRequest, request, startGateway } from '../lib/harness.mjs';

describe('http basics (memory store)', () => {
  let gw;
  const get = (path, opts = {}) => request({ port: gw.port, path, ...opts });

  before(async () => {
    gw = await startGateway({ config: ({ port }) => gatewayConfig({ port }) });
  });
  after(async () => {
    if (gw) await gw.stop();
  });

  test('GET /healthz answers 200 JSON {"status":"ok"}', async () => {
    const r = await get('/healthz');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.deepEqual(r.json(), { status: 'ok' });
    assert.equal(r.headers['cache-control'], 'no-store');
  });

  // RFC 9110 §9.3.2: a HEAD response carries no content. Sending the GET body
  // desynchronises keep-alive clients (the body is read as the next response).
  test('HEAD /healthz answers 200 with headers only, no body bytes', async () => {
    const raw = await rawRequest(gw.port, ['HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'], { timeoutMs: 2000 });
    const r = parseRawResponse(raw);
    assert.equal(r.status, 200);
    assert.match(r.headers['x-request-id'] || '', /^[0-9a-f]{32}$/);
    assert.equal(r.body, '', `HEAD response carried a body: ${JSON.stringify(r.body)}`);
  });

  test('GET /readyz answers 200 with the memory store', async () => {
    const r = await get('/readyz');
    assert.equal(r.status, 200);
    const j = r.json();
    assert.equal(j.status, 'ready');
    assert.equal(j.checks.store, 'ok');
  });

  test('/metrics is Prometheus text with counters that increase', async () => {
    const key = 'mcpgate_http_requests_total{route="/healthz",status="200"}';
    const m1 = await get('/metrics');
    assert.equal(m1.status, 200);
    assert.match(m1.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const before1 = parseMetrics(m1.body);
    assert.ok(before1.has(key), `missing ${key} in:\n${m1.body}`);
    const n0 = before1.get(key);
    for (let i = 0; i < 3; i++) assert.equal((await get('/healthz')).status, 200);
    const after1 = parseMetrics((await get('/metrics')).body);
    assert.equal(after1.get(key), n0 + 3);

    const text = m1.body;
    assert.match(text, /^# TYPE mcpgate_http_requests_total counter$/m);
    assert.match(text, /^# TYPE mcpgate_http_request_duration_seconds histogram$/m);
    assert.match(text, /^mcpgate_http_request_duration_seconds_bucket\{route="\/healthz",le="\+Inf"\} \d+$/m);
    assert.match(text, /^mcpgate_http_request_duration_seconds_count\{route="\/healthz"\} \d+$/m);
    assert.match(text, /^mcpgate_http_request_duration_seconds_sum\{route="\/healthz"\} [0-9.e+-]+$/m);
    assert.match(text, /^# TYPE mcpgate_http_open_connections gauge$/m);
    assert.match(text, /^mcpgate_http_open_connections \d+$/m);
    assert.match(text, /^mcpgate_store_up 1$/m);
    assert.match(text, /^mcpgate_build_info\{version="[^"]+",revision="[^"]+"\} 1$/m);
    // Buckets are cumulative: each le bucket is >= the previous one, +Inf == count.
    const buckets = [...after1.entries()].filter(([k]) => k.startsWith('mcpgate_http_request_duration_seconds_bucket{route="/healthz"'));
    assert.ok(buckets.length >= 2);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i][1] >= buckets[i - 1][1], `${buckets[i][0]} decreases`);
    assert.equal(buckets[buckets.length - 1][1], after1.get('mcpgate_http_request_duration_seconds_count{route="/healthz"}'));
    // Every sample line is "name{labels} value" or "name value".
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+-]+$|^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (\+Inf|NaN)$/, `bad sample line: ${line}`);
    }
  });

  test('a sane X-Request-Id is echoed and logged', async () => {
    const id = 'test-req.ID_0123456789';
    const r = await get('/healthz', { headers: { 'x-request-id': id } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-request-id'], id);
    const line = await gw.waitForLog((l) => l.module === 'access' && l.request_id === id);
    assert.equal(line.method, 'GET');
    assert.equal(line.path, '/healthz');
    assert.equal(line.status, 200);
  });

  for (const [name, bad] of [
    ['with spaces and punctuation', 'bad id; <script>'],
    ['longer than 64 characters', 'a'.repeat(65)],
    ['with a slash', 'abc/def'],
  ]) {
    test(`an insane X-Request-Id (${name}) is replaced by 32 hex chars`, async () => {
      const r = await get('/healthz', { headers: { 'x-request-id': bad } });
      assert.equal(r.status, 200);
      const rid = r.headers['x-request-id'];
      assert.match(rid, /^[0-9a-f]{32}$/);
      assert.notEqual(rid, bad);
      const line = await gw.waitForLog((l) => l.module === 'access' && l.request_id === rid);
      assert.equal(line.path, '/healthz');
    });
  }

  test('without X-Request-Id every response gets a fresh 32-hex id', async () => {
    const a = (await get('/healthz')).headers['x-request-id'];
    const b = (await get('/healthz')).headers['x-request-id'];
    assert.match(a, /^[0-9a-f]{32}$/);
    assert.match(b, /^[0-9a-f]{32}$/);
    assert.notEqual(a, b);
  });

  test('the access log carries request_id, method, path without query, status, bytes, duration_us, route', async () => {
    const r = await get('/healthz?token=secret123&x=1');
    assert.equal(r.status, 200);
    const rid = r.headers['x-request-id'];
    const line = await gw.waitForLog((l) => l.module === 'access' && l.request_id === rid);
    assert.equal(line.level, 'info');
    assert.equal(line.method, 'GET');
    assert.equal(line.path, '/healthz');
    assert.equal(line.status, 200);
    assert.equal(line.bytes, Buffer.byteLength(r.body));
    assert.equal(typeof line.duration_us, 'number');
    assert.ok(line.duration_us >= 0 && line.duration_us < 5e6, `duration_us ${line.duration_us}`);
    assert.equal(line.route, '/healthz');
    assert.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(!gw.stderr().includes('secret123'), 'the query string leaked into the logs');
    assert.ok(!gw.stderr().includes('token=secret'), 'the query string leaked into the logs');
  });

  test('unknown path answers 404 JSON not_found', async () => {
    const r = await get('/no/such/thing');
    assert.equal(r.status, 404);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.equal(r.json().error, 'not_found');
    const line = await gw.waitForLog((l) => l.module === 'access' && l.request_id === r.headers['x-request-id']);
    assert.equal(line.status, 404);
    assert.equal(line.route, '-');
  });

  test('DELETE /healthz answers 405 with Allow containing GET', async () => {
    const r = await get('/healthz', { method: 'DELETE' });
    assert.equal(r.status, 405);
    assert.ok(r.headers.allow, 'no Allow header');
    const allow = r.headers.allow.split(',').map((s) => s.trim());
    assert.ok(allow.includes('GET'), `Allow: ${r.headers.allow}`);
    assert.ok(!allow.includes('DELETE'));
    assert.equal(r.json().error, 'method_not_allowed');
  });

  test('POST /readyz answers 405, and the server keeps serving', async () => {
    const r = await get('/readyz', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 405);
    assert.equal((await get('/healthz')).status, 200);
  });

  test('the gateway exits 0 on SIGTERM with no sanitizer report', async () => {
    const rc = await gw.stop('SIGTERM');
    assert.equal(rc, 0);
    await gw.waitForLog((l) => l.msg === 'mcpgate stopped', 1000);
    gw = null;
  });
});

describe('metrics on their own listener', () => {
  let gw;
  let mport;
  before(async () => {
    mport = await freePort();
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, metrics: { path: '/metrics', listen: `127.0.0.1:${mport}` } }),
    });
  });
  after(async () => {
    if (gw) await gw.stop();
  });

  test('metrics answer on the metrics port and 404 on the main port', async () => {
    const main = await request({ port: gw.port, path: '/metrics' });
    assert.equal(main.status, 404);
    assert.equal(main.json().error, 'not_found');
    const m = await request({ port: mport, path: '/metrics' });
    assert.equal(m.status, 200);
    assert.match(m.body, /^mcpgate_store_up 1$/m);
    assert.match(m.body, /mcpgate_http_requests_total\{route="\/healthz",status="200"\} \d+/);
  });

  test('requests on the main port are counted in the metrics port exposition', async () => {
    const key = 'mcpgate_http_requests_total{route="/readyz",status="200"}';
    const n0 = parseMetrics((await request({ port: mport, path: '/metrics' })).body).get(key) || 0;
    assert.equal((await request({ port: gw.port, path: '/readyz' })).status, 200);
    assert.equal((await request({ port: gw.port, path: '/readyz' })).status, 200);
    const n1 = parseMetrics((await request({ port: mport, path: '/metrics' })).body).get(key);
    assert.equal(n1, n0 + 2);
  });

  test('a custom metrics.path on the main listener moves the endpoint', async () => {
    const gw2 = await startGateway({ config: ({ port }) => gatewayConfig({ port, metrics: { path: '/internal/prom' } }) });
    assert.equal((await request({ port: gw2.port, path: '/metrics' })).status, 404);
    const r = await request({ port: gw2.port, path: '/internal/prom' });
    assert.equal(r.status, 200);
    assert.match(r.body, /^mcpgate_store_up 1$/m);
    assert.equal(await gw2.stop(), 0);
  });

  test('metrics.enabled: false serves no metrics at all', async () => {
    const gw3 = await startGateway({ config: ({ port }) => gatewayConfig({ port, metrics: { enabled: false } }) });
    assert.equal((await request({ port: gw3.port, path: '/metrics' })).status, 404);
    assert.equal(await gw3.stop(), 0);
  });

  test('the gateway exits 0 on SIGTERM with no sanitizer report', async () => {
    assert.equal(await gw.stop(), 0);
    gw = null;
  });
});
