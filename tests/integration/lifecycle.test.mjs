// Signals: SIGHUP reloads (or keeps the running config and logs errors with
// file:line:column), SIGTERM/SIGINT drain in-flight requests and exit 0.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { after, describe, test } from 'node:test';

import {
  canConnect, gatewayConfig, parseRawResponse, rawRequest, request, sleep, startBlackHole, startGateway, waitFor,
} from '../lib/harness.mjs';

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('SIGHUP reload', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('a broken config is refused with file:line:column errors; a valid one is applied', async () => {
    gw = await startGateway({ config: ({ port }) => gatewayConfig({ port }) });
    const port = gw.port;
    const before = await request({ port, method: 'POST', path: '/healthz', body: 'x'.repeat(2048) });
    assert.equal(before.status, 405, 'a 2 KiB body is within the default max_body');

    // 1. Broken: an unknown key on line 5 (after server: listen, public_url and "store:" lines).
    const broken = gatewayConfig({ port }).replace('store:\n', 'store:\n  bogus_key: 1\n');
    gw.writeConfig(broken);
    const brokenLine = broken.split('\n').findIndex((l) => l.includes('bogus_key')) + 1;
    gw.reload();
    const failed = await gw.waitForLog((l) => l.module === 'app' && /reload failed/.test(l.msg));
    assert.equal(failed.level, 'error');
    const errLine = gw.logs().find((l) => l.module === 'config' && l.level === 'error');
    assert.ok(errLine, `no config error line in:\n${gw.stderr()}`);
    assert.match(errLine.msg, new RegExp(`^${escapeRe(gw.configPath)}:${brokenLine}:\\d+: `));
    assert.match(errLine.msg, /bogus_key/);
    // Still serving with the old configuration.
    assert.equal((await request({ port, path: '/healthz' })).status, 200);
    assert.ok(!gw.logs().some((l) => l.msg === 'configuration reloaded'));

    // 2. Valid: debug level, no access log, and a 1 KiB body limit.
    const nAccess = () => gw.logs().filter((l) => l.module === 'access').length;
    gw.writeConfig(gatewayConfig({ port, limits: { max_body: '1KiB' }, log: { level: 'debug', access_log: false } }));
    gw.reload();
    const ok = await gw.waitForLog((l) => l.msg === 'configuration reloaded');
    assert.equal(ok.file, gw.configPath);
    const accessBefore = nAccess();
    const now = await request({ port, method: 'POST', path: '/healthz', body: 'x'.repeat(2048) });
    assert.equal(now.status, 413, 'the new max_body was not applied');
    assert.equal((await request({ port, path: '/healthz' })).status, 200);
    await sleep(100);
    assert.equal(nAccess(), accessBefore, 'access_log: false was not applied');

    // 3. A change that needs a restart is reported, and the old listener keeps working.
    gw.writeConfig(gatewayConfig({ port, listen: [`127.0.0.1:${port}`, '127.0.0.1:1'] }));
    gw.reload();
    await gw.waitForLog((l) => l.level === 'warn' && /server\.listen changed/.test(l.msg));
    await waitFor(() => gw.logs().filter((l) => l.msg === 'configuration reloaded').length === 2, { what: 'second reload' });
    assert.equal((await request({ port, path: '/healthz' })).status, 200);

    assert.equal(await gw.stop(), 0);
    gw = null;
  });

  test('--log-level on the command line wins over log.level, also after a reload', async () => {
    gw = await startGateway({ config: ({ port }) => gatewayConfig({ port, log: { level: 'debug' } }), args: ['--log-level', 'warn'] });
    const port = gw.port;
    assert.equal((await request({ port, path: '/healthz' })).status, 200);
    await sleep(100);
    assert.equal(gw.logs().filter((l) => l.level === 'info' || l.level === 'debug').length, 0,
      `info lines despite --log-level warn:\n${gw.stderr()}`);
    gw.writeConfig(gatewayConfig({ port, limits: { max_body: '1KiB' }, log: { level: 'debug' } }));
    gw.reload();
    // The reload is visible through its new body limit (its own info line is filtered out).
    await waitFor(async () => (await request({ port, method: 'POST', path: '/healthz', body: 'x'.repeat(2048) })).status === 413,
      { timeoutMs: 3000, what: 'the reloaded max_body' });
    assert.equal((await request({ port, path: '/healthz' })).status, 200);
    await sleep(100);
    assert.equal(gw.logs().filter((l) => l.level === 'info' || l.level === 'debug').length, 0,
      `info lines after the reload despite --log-level warn:\n${gw.stderr()}`);
    assert.equal(await gw.stop(), 0);
    gw = null;
  });

  test('a reload to an unreadable file keeps serving', async () => {
    gw = await startGateway({ config: ({ port }) => gatewayConfig({ port }) });
    gw.writeConfig('server: [this is: not, valid\n');
    gw.reload();
    await gw.waitForLog((l) => /reload failed/.test(l.msg));
    gw.writeConfig('');
    gw.reload();
    await waitFor(() => gw.logs().filter((l) => /reload failed/.test(l.msg)).length === 2, { what: 'second failed reload' });
    assert.equal((await request({ port: gw.port, path: '/healthz' })).status, 200);
    for (let i = 0; i < 5; i++) gw.reload(); // a burst of HUPs
    await sleep(200);
    assert.equal((await request({ port: gw.port, path: '/healthz' })).status, 200);
    assert.equal(await gw.stop(), 0);
    gw = null;
  });
});

describe('SIGTERM / SIGINT drain', () => {
  const gws = [];
  after(async () => {
    for (const g of gws) await g.stop();
  });

  test('SIGTERM: the in-flight request gets its 503, the listener closes, exit 0 after it finished', async () => {
    const bh = await startBlackHole();
    const gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, store: { url: bh.url, timeout: '2s' } }),
    });
    gws.push(gw);
    const exitedAt = new Promise((resolve) => gw.proc.once('exit', () => resolve(Date.now())));

    // Start a /readyz that is still waiting on the store 200 ms later. (While
    // the store is between reconnects a probe fails at once; then try again.)
    let inflight = null;
    for (let i = 0; i < 20 && !inflight; i++) {
      const p = request({ port: gw.port, path: '/readyz', timeoutMs: 6000 }).then((r) => ({ r, at: Date.now() }));
      const early = await Promise.race([p, sleep(200).then(() => null)]);
      if (early === null) inflight = p;
      else assert.equal(early.r.status, 503);
    }
    assert.ok(inflight, 'no /readyz stayed in flight against the black hole');
    const signalledAt = Date.now();
    gw.proc.kill('SIGTERM');
    await gw.waitForLog((l) => l.msg === 'draining' && l.signal === 'SIGTERM', 2000);

    // The listener stops accepting shortly after the signal.
    await waitFor(async () => !(await canConnect(gw.port, '127.0.0.1', 300)), {
      timeoutMs: 1000, intervalMs: 50, what: 'the listener to refuse new connections',
    });

    const { r, at } = await inflight;
    assert.equal(r.status, 503);
    assert.match(r.json().error_description, /store/i);
    assert.ok(at > signalledAt, 'the request was answered before SIGTERM: it was not in flight');

    const exitTime = await Promise.race([exitedAt, sleep(5000).then(() => null)]);
    assert.ok(exitTime, 'mcpgate did not exit after draining');
    assert.ok(exitTime >= at - 50, 'mcpgate exited before the in-flight request was answered');
    assert.equal(await gw.stop(), 0);
    await gw.waitForLog((l) => l.msg === 'mcpgate stopped', 500);
  });

  test('SIGINT exits 0', async () => {
    const gw = await startGateway({ config: ({ port }) => gatewayConfig({ port }) });
    gws.push(gw);
    assert.equal((await request({ port: gw.port, path: '/healthz' })).status, 200);
    const t0 = Date.now();
    assert.equal(await gw.stop('SIGINT'), 0);
    assert.ok(Date.now() - t0 < 3000);
    assert.ok(gw.logs().some((l) => l.msg === 'draining' && l.signal === 'SIGINT'));
  });

  test('SIGTERM with an idle keep-alive connection open exits 0 promptly', async () => {
    const gw = await startGateway({ config: ({ port }) => gatewayConfig({ port }) });
    gws.push(gw);
    const sock = net.connect({ port: gw.port, host: '127.0.0.1' });
    sock.on('error', () => {});
    let got = '';
    sock.on('data', (d) => (got += d));
    await new Promise((resolve) => sock.once('connect', resolve));
    sock.write('GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n');
    await waitFor(() => got.includes('{"status":"ok"}'), { timeoutMs: 2000, what: 'the keep-alive response' });
    const t0 = Date.now();
    assert.equal(await gw.stop('SIGTERM'), 0);
    assert.ok(Date.now() - t0 < 3000, `exit took ${Date.now() - t0} ms`);
    sock.destroy();
  });

  test('shutdown_grace bounds the drain: a stuck request does not keep the process alive', async () => {
    const bh = await startBlackHole();
    const gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, store: { url: bh.url, timeout: '20s' }, limits: { shutdown_grace: '300ms' } }),
    });
    gws.push(gw);
    const inflight = rawRequest(gw.port, ['GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n'], { timeoutMs: 8000 });
    await sleep(200);
    const t0 = Date.now();
    const rc = await gw.stop('SIGTERM', 8000);
    const took = Date.now() - t0;
    assert.equal(rc, 0);
    assert.ok(took < 3000, `exit took ${took} ms with a 300 ms grace`);
    await gw.waitForLog((l) => /shutdown grace over/.test(l.msg), 500);
    // The stuck client got an answer or a close, not a hang.
    const text = await inflight;
    if (text) assert.ok(parseRawResponse(text).status >= 500, text.slice(0, 200));
  });

  test('a second SIGTERM during the drain exits at once', async () => {
    const bh = await startBlackHole();
    const gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, store: { url: bh.url, timeout: '20s' } }),
    });
    gws.push(gw);
    const inflight = rawRequest(gw.port, ['GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n'], { timeoutMs: 8000 });
    await sleep(200);
    gw.proc.kill('SIGTERM');
    await gw.waitForLog((l) => l.msg === 'draining', 2000);
    await sleep(100);
    assert.ok(!gw.exited, 'exited on the first SIGTERM although a request was in flight');
    const t0 = Date.now();
    const rc = await gw.stop('SIGTERM', 8000);
    assert.equal(rc, 0);
    assert.ok(Date.now() - t0 < 2000, `second SIGTERM took ${Date.now() - t0} ms`);
    assert.ok(gw.logs().some((l) => /second signal/.test(l.msg)));
    await inflight;
  });
});

describe('the open-file limit (server.limits.open_files)', () => {
  const softLimit = (pid) => Number(/^Max open files\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'))[1]);
  const gws = [];
  after(async () => {
    for (const g of gws) assert.equal(await g.stop(), 0);
  });

  test('by default the soft limit is raised to the hard limit at start', async () => {
    const gw = await startGateway({ nofile: { soft: 256, hard: 4096 }, config: ({ port }) => gatewayConfig({ port, limits: { max_connections: 1000 } }) });
    gws.push(gw);
    assert.equal(softLimit(gw.pid), 4096);
    assert.ok(!gw.logs().some((l) => /open-file limit is below/.test(l.msg)), 'warned although 4096 is enough');
  });

  test('open_files sets it, within the hard limit', async () => {
    const gw = await startGateway({ nofile: { soft: 256, hard: 4096 }, config: ({ port }) => gatewayConfig({ port, limits: { max_connections: 500, open_files: 1000 } }) });
    gws.push(gw);
    assert.equal(softLimit(gw.pid), 1000);
    const over = await startGateway({ nofile: { soft: 256, hard: 2048 }, config: ({ port }) => gatewayConfig({ port, limits: { max_connections: 500, open_files: 100000 } }) });
    gws.push(over);
    assert.equal(softLimit(over.pid), 2048);
    await over.waitForLog((l) => l.level === 'warn' && /above the hard limit/.test(l.msg) && l.hard_limit === 2048);
  });

  test('a hard limit below max_connections is warned about at start', async () => {
    const gw = await startGateway({ nofile: { soft: 256, hard: 512 }, config: ({ port }) => gatewayConfig({ port }) });
    gws.push(gw);
    const w = await gw.waitForLog((l) => l.level === 'warn' && /open-file limit is below server\.limits\.max_connections/.test(l.msg));
    assert.equal(w.open_files, 512);
    assert.equal(w.needed, 20000 + 256);
  });
});
