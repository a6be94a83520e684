// Redis Sentinel (issue 10): a real master, one replica and three sentinels
// (`redis-server --sentinel`, quorum 2), the gateway configured with the
// sentinels only. The master is SIGKILLed; once the sentinels report the new
// master the gateway must follow: /readyz ready again, the failover counted,
// its pub/sub channels subscribed on the new master, the data written before
// the kill readable there, and a fresh store (the CLI) finds the new master too.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import {
  REDIS_SERVER, freePort, gatewayConfig, parseMetrics, redisCommand, request, runCli, startGateway, tmpDir, waitFor, withTimeout,
} from '../lib/harness.mjs';

const procs = [];

function startProc(args, what) {
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const p = {
    child,
    out: () => out,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await withTimeout(gone, 5000, `${what} exiting`);
    },
  };
  procs.push(p);
  return p;
}

async function startServer(port, extra = []) {
  const dir = tmpDir('mcpgate-sentinel-data-');
  const p = startProc(['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', '', ...extra], `redis ${port}`);
  await waitFor(async () => {
    if (p.child.exitCode !== null) throw new Error(`redis ${port} exited: ${p.out()}`);
    return (await redisCommand(port, ['PING'], { timeoutMs: 500 }).catch(() => null)) === 'PONG';
  }, { timeoutMs: 10000, intervalMs: 50, what: `redis on ${port}` });
  return p;
}

async function startSentinel(port, masterPort) {
  const dir = tmpDir('mcpgate-sentinel-');
  const conf = path.join(dir, 'sentinel.conf');
  fs.writeFileSync(conf, [
    `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, 'logfile ""',
    `sentinel monitor mymaster 127.0.0.1 ${masterPort} 2`,
    'sentinel down-after-milliseconds mymaster 1000',
    'sentinel failover-timeout mymaster 5000',
    'sentinel parallel-syncs mymaster 1', '',
  ].join('\n'));
  const p = startProc([conf, '--sentinel'], `sentinel ${port}`);
  await waitFor(async () => {
    if (p.child.exitCode !== null) throw new Error(`sentinel ${port} exited: ${p.out()}`);
    return (await redisCommand(port, ['PING'], { timeoutMs: 500 }).catch(() => null)) === 'PONG';
  }, { timeoutMs: 10000, intervalMs: 50, what: `sentinel on ${port}` });
  return p;
}

const masterOf = async (sPort) => (await redisCommand(sPort, ['SENTINEL', 'get-master-addr-by-name', 'mymaster'], { timeoutMs: 1000 }).catch(() => null));

describe('Redis Sentinel', () => {
  after(async () => {
    for (const p of procs.reverse()) await p.kill();
  });

  test('the master is killed: the gateway follows the sentinels to the new master', { timeout: 90000 }, async () => {
    const mPort = await freePort();
    const rPort = await freePort();
    const master = await startServer(mPort);
    await startServer(rPort, ['--replicaof', '127.0.0.1', String(mPort)]);
    await waitFor(async () => /master_link_status:up/.test(await redisCommand(rPort, ['INFO', 'replication'])),
      { timeoutMs: 15000, intervalMs: 100, what: 'the replica in sync' });
    const sPorts = [await freePort(), await freePort(), await freePort()];
    for (const p of sPorts) await startSentinel(p, mPort);
    // Each sentinel knows the replica and the two other sentinels (gossip), so a quorum can act.
    await waitFor(async () => {
      for (const p of sPorts) {
        const others = await redisCommand(p, ['SENTINEL', 'sentinels', 'mymaster']).catch(() => []);
        const replicas = await redisCommand(p, ['SENTINEL', 'replicas', 'mymaster']).catch(() => []);
        if (others.length !== 2 || replicas.length !== 1) return false;
      }
      return true;
    }, { timeoutMs: 30000, intervalMs: 200, what: 'the sentinels to know each other and the replica' });

    const store = { url: 'redis://127.0.0.1:1/0', timeout: '1s' };
    const extra = `store:\n  backend: redis\n  redis:\n    url: "redis://127.0.0.1:1/0"\n    timeout: 1s\n` +
      `    sentinels: [${sPorts.map((p) => `"127.0.0.1:${p}"`).join(', ')}]\n    master_name: mymaster\n`;
    void store;
    const gw = await startGateway({ config: ({ port }) => gatewayConfig({ port }).replace('store:\n  backend: memory\n', '') + extra });
    try {
      const ready = async () => (await request({ port: gw.port, path: '/readyz', timeoutMs: 3000 }).catch(() => ({ status: 0 }))).status === 200;
      await waitFor(ready, { timeoutMs: 10000, intervalMs: 100, what: 'ready through the sentinels' });
      await gw.waitForLog((l) => l.module === 'store' && /connected/.test(l.msg) && new RegExp(`:${mPort}/`).test(l.addr || ''), 5000);

      // Data on the master, acknowledged by the replica before the kill.
      await redisCommand(mPort, ['SET', 'mcpgate:sentinel-test', 'before']);
      assert.equal(await redisCommand(mPort, ['WAIT', '1', '5000']), 1);

      await master.kill();
      await waitFor(async () => {
        const a = await masterOf(sPorts[0]);
        return Array.isArray(a) && a[1] === String(rPort);
      }, { timeoutMs: 30000, intervalMs: 100, what: 'the sentinels to promote the replica' });

      await waitFor(async () => {
        const m = parseMetrics((await request({ port: gw.port, path: '/metrics' })).body);
        return m.get('mcpgate_store_failovers_total') >= 1 && m.get('mcpgate_store_up') === 1 && (await ready());
      }, { timeoutMs: 20000, intervalMs: 100, what: 'the gateway ready on the new master, the failover counted' });
      await gw.waitForLog((l) => l.module === 'store' && /reconnected/.test(l.msg) && new RegExp(`:${rPort}/`).test(l.addr || ''), 10000);
      // Pub/sub re-subscribed on the new master.
      await waitFor(async () => (await redisCommand(rPort, ['PUBSUB', 'CHANNELS', 'mcpgate:*'])).length > 0,
        { timeoutMs: 10000, intervalMs: 100, what: 'the gateway subscribed on the new master' });
      assert.equal(await redisCommand(rPort, ['GET', 'mcpgate:sentinel-test']), 'before');
      // A fresh store (the CLI) asks the sentinels and reads from the new master.
      const cli = await runCli(['grants', 'list', '-c', gw.configPath, '--user', 'nobody']);
      assert.equal(cli.code, 0, cli.stderr);
    } finally {
      assert.equal(await gw.stop(), 0);
    }
  });
});
