// Several listeners in one config: IPv4, IPv6 (when ::1 can be bound here)
// and a unix socket all serve the same routes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { canBind, freePort, gatewayConfig, request, startGateway, tmpDir } from '../lib/harness.mjs';

describe('listeners', () => {
  const gws = [];
  after(async () => {
    for (const g of gws) await g.stop();
  });

  test('127.0.0.1:P, [::1]:P and unix:/…sock all answer /healthz', async (t) => {
    const v6 = await canBind('::1');
    const port = await freePort();
    const sock = path.join(tmpDir('mcpgate-sock-'), 'gw.sock');
    const listen = [`127.0.0.1:${port}`, ...(v6 ? [`[::1]:${port}`] : []), `unix:${sock}`];
    const gw = await startGateway({ port, config: gatewayConfig({ port, listen }) });
    gws.push(gw);

    const r4 = await request({ port, host: '127.0.0.1', path: '/healthz' });
    assert.equal(r4.status, 200);
    assert.deepEqual(r4.json(), { status: 'ok' });

    if (v6) {
      const r6 = await request({ port, host: '::1', path: '/healthz' });
      assert.equal(r6.status, 200);
      const line = await gw.waitForLog((l) => l.module === 'access' && l.request_id === r6.headers['x-request-id']);
      assert.equal(line.client, '::1');
    } else {
      t.diagnostic('::1 cannot be bound on this machine: IPv6 listener not checked');
    }

    assert.ok(fs.statSync(sock).isSocket(), `${sock} is not a socket`);
    const ru = await request({ socketPath: sock, path: '/healthz' });
    assert.equal(ru.status, 200);
    assert.deepEqual(ru.json(), { status: 'ok' });
    const line = await gw.waitForLog((l) => l.module === 'access' && l.request_id === ru.headers['x-request-id']);
    assert.equal(line.client, 'unix');
    assert.equal((await request({ socketPath: sock, path: '/readyz' })).status, 200);

    // The startup log names every listener.
    for (const spec of listen) {
      assert.ok(gw.logs().some((l) => l.msg === 'listening' && l.address === spec), `no "listening" line for ${spec}`);
    }
    assert.equal(await gw.stop(), 0);
  });

  test('a stale unix socket file left by a crash is replaced', async () => {
    const port = await freePort();
    const sock = path.join(tmpDir('mcpgate-sock-'), 'stale.sock');
    // Leave a socket file without a listener behind, as a crashed process would.
    const r = spawnSync(process.execPath, ['-e',
      `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`],
    { timeout: 5000 });
    assert.equal(r.signal, 'SIGKILL');
    assert.ok(fs.statSync(sock).isSocket());
    const gw = await startGateway({ port, config: gatewayConfig({ port, listen: [`127.0.0.1:${port}`, `unix:${sock}`] }) });
    gws.push(gw);
    assert.equal((await request({ socketPath: sock, path: '/healthz' })).status, 200);
    assert.equal(await gw.stop(), 0);
  });

  test('a listen address already in use makes startup fail with exit 1 and a clear error', async () => {
    const blocker = net.createServer();
    await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = blocker.address().port;
    try {
      const gw = await startGateway({ port, config: gatewayConfig({ port }), health: false });
      gws.push(gw);
      const rc = await Promise.race([
        new Promise((resolve) => gw.proc.once('exit', (code) => resolve(code))),
        new Promise((_, reject) => setTimeout(() => reject(new Error('mcpgate kept running on a busy port')), 8000)),
      ]).catch(async (e) => {
        await gw.stop('SIGKILL');
        throw e;
      });
      assert.equal(rc, 1);
      const err = gw.logs().find((l) => l.level === 'error');
      assert.ok(err, `no error line in: ${gw.stderr()}`);
      assert.match(JSON.stringify(err), new RegExp(String(port)));
      assert.equal(await gw.stop(), 1);
    } finally {
      blocker.close();
    }
  });
});
