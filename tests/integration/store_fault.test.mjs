// Readiness follows the store: a real redis-server killed and restarted under
// the gateway, a "black hole" that accepts and never answers, a password, and
// the memory backend.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  freePort, gatewayConfig, parseMetrics, request, sleep, startBlackHole, startGateway, startRedis,
} from '../lib/harness.mjs';

const readyz = (gw, timeoutMs = 5000) => request({ port: gw.port, path: '/readyz', timeoutMs });
const storeUp = async (gw) => parseMetrics((await request({ port: gw.port, path: '/metrics' })).body).get('mcpgate_store_up');

/** Polls /readyz every 100 ms until it answers STATUS; returns {elapsed, res}. */
async function pollReadyz(gw, status, limitMs) {
  const t0 = Date.now();
  for (;;) {
    let res;
    try {
      res = await readyz(gw, limitMs);
    } catch (e) {
      res = { status: 0, error: e };
    }
    const elapsed = Date.now() - t0;
    if (res.status === status) return { elapsed, res };
    if (elapsed > limitMs) {
      throw new Error(`/readyz did not answer ${status} within ${limitMs} ms (last: ${res.status} ${res.body ?? res.error?.message})`);
    }
    await sleep(100);
  }
}

describe('store fault', () => {
  const started = [];
  after(async () => {
    for (const g of started) await g.stop();
  });

  test('redis killed → /readyz 503 within 2 s; restarted → 200 again; clean exit', async () => {
    const redis = await startRedis();
    const gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, store: { url: redis.url, timeout: '2s' } }),
    });
    started.push(gw);

    const { res: ok } = await pollReadyz(gw, 200, 5000);
    assert.deepEqual(ok.json(), { status: 'ready', checks: { store: 'ok' } });
    assert.equal(await storeUp(gw), 1);

    await redis.kill9();
    const killedAt = Date.now();
    const { res: down } = await pollReadyz(gw, 503, 2000);
    const elapsed = Date.now() - killedAt;
    assert.ok(elapsed < 2000, `503 came ${elapsed} ms after the kill`);
    assert.match(down.headers['content-type'], /^application\/json/);
    const body = down.json();
    assert.equal(body.error, 'not_ready');
    assert.match(body.error_description, /store/i);
    assert.equal(down.headers['retry-after'], '1');

    // The gateway itself is alive and says so.
    assert.equal((await request({ port: gw.port, path: '/healthz' })).status, 200);
    assert.equal(await storeUp(gw), 0);
    assert.ok(!gw.exited);
    // Still 503 a moment later (not a fluke), and still answering quickly.
    const t1 = Date.now();
    assert.equal((await readyz(gw)).status, 503);
    assert.ok(Date.now() - t1 < 2500);

    await redis.restart();
    const { elapsed: back } = await pollReadyz(gw, 200, 10000);
    assert.ok(back < 10000);
    assert.equal(await storeUp(gw), 1);
    await gw.waitForLog((l) => l.module === 'store' && /reconnected/.test(l.msg), 2000);
    const m = parseMetrics((await request({ port: gw.port, path: '/metrics' })).body);
    assert.ok(m.get('mcpgate_store_reconnects_total') >= 1, 'reconnects_total did not count the reconnect');
    assert.ok(m.get('mcpgate_store_errors_total') >= 1, 'errors_total did not count the failed pings');

    assert.equal(await gw.stop('SIGTERM'), 0);
  });

  test('black-hole redis with store.redis.timeout 500ms → /readyz 503 in < 1500 ms, not a hang', async () => {
    const bh = await startBlackHole();
    const gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, store: { url: bh.url, timeout: '500ms' } }),
    });
    started.push(gw);
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      const r = await readyz(gw, 5000);
      const elapsed = Date.now() - t0;
      assert.equal(r.status, 503, `attempt ${i}: ${r.body}`);
      assert.ok(elapsed < 1500, `attempt ${i}: /readyz took ${elapsed} ms`);
      assert.match(r.json().error_description, /store/i);
    }
    assert.ok(bh.connections() >= 1, 'the gateway never connected to the black hole');
    assert.equal((await request({ port: gw.port, path: '/healthz' })).status, 200);
    const m = parseMetrics((await request({ port: gw.port, path: '/metrics' })).body);
    assert.equal(m.get('mcpgate_store_up'), 0);
    assert.equal(await gw.stop(), 0);
  });

  test('redis not running at startup: the gateway starts, /readyz 503, then 200 once redis comes up', async () => {
    const redis = await startRedis();
    await redis.kill9();
    const gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, store: { url: redis.url, timeout: '1s' } }),
    });
    started.push(gw);
    const t0 = Date.now();
    const r = await readyz(gw);
    assert.equal(r.status, 503);
    assert.ok(Date.now() - t0 < 2000);
    await redis.restart();
    await pollReadyz(gw, 200, 10000);
    assert.equal(await gw.stop(), 0);
  });

  test('redis with requirepass: the right password → ready, a wrong one → 503 without a crash', async () => {
    const redis = await startRedis({ password: 's3cret-pass' });
    const good = await startGateway({
      config: ({ port }) => gatewayConfig({ port, store: { url: redis.url, timeout: '1s', password: 's3cret-pass' } }),
    });
    started.push(good);
    await pollReadyz(good, 200, 5000);
    assert.ok(!good.stderr().includes('s3cret-pass'), 'the redis password appears in the logs');
    assert.equal(await good.stop(), 0);

    const bad = await startGateway({
      config: ({ port }) => gatewayConfig({ port, store: { url: redis.url, timeout: '1s', password: 'wrong-pass' } }),
    });
    started.push(bad);
    const r = await readyz(bad);
    assert.equal(r.status, 503);
    assert.match(r.json().error_description, /store/i);
    await sleep(300);
    assert.equal((await readyz(bad)).status, 503);
    assert.equal((await request({ port: bad.port, path: '/healthz' })).status, 200);
    assert.ok(!bad.stderr().includes('wrong-pass'), 'the redis password appears in the logs');
    assert.equal(await bad.stop(), 0);
  });

  test('memory backend: /readyz 200 with no redis at all', async () => {
    // Point the (unused) redis URL at a closed port to prove nothing talks to it.
    const closed = await freePort();
    const gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port }).replace('  backend: memory', `  backend: memory\n  redis: { url: "redis://127.0.0.1:${closed}/0" }`),
    });
    started.push(gw);
    const r = await readyz(gw);
    assert.equal(r.status, 200);
    assert.equal(r.json().checks.store, 'ok');
    assert.equal(await storeUp(gw), 1);
    assert.equal(await gw.stop(), 0);
  });
});
