// A Redis Sentinel set for tests: a master, one replica and three sentinels
// (`redis-server --sentinel`, quorum 2, down after 1 s), all real processes
// on 127.0.0.1. Used by integration/redis_sentinel and e2e/sentinel_tokens.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { REDIS_SERVER, freePort, redisCommand, tmpDir, waitFor, withTimeout } from './harness.mjs';

export const MASTER_NAME = 'mymaster';

function startProc(procs, args, what) {
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

async function startServer(procs, port, extra = []) {
  const dir = tmpDir('mcpgate-sentinel-data-');
  const p = startProc(procs, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', '', ...extra], `redis ${port}`);
  await waitFor(async () => {
    if (p.child.exitCode !== null) throw new Error(`redis ${port} exited: ${p.out()}`);
    return (await redisCommand(port, ['PING'], { timeoutMs: 500 }).catch(() => null)) === 'PONG';
  }, { timeoutMs: 10000, intervalMs: 50, what: `redis on ${port}` });
  return p;
}

async function startSentinel(procs, port, masterPort) {
  const dir = tmpDir('mcpgate-sentinel-');
  const conf = path.join(dir, 'sentinel.conf');
  fs.writeFileSync(conf, [
    `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, 'logfile ""',
    `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
    `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
    `sentinel failover-timeout ${MASTER_NAME} 5000`,
    `sentinel parallel-syncs ${MASTER_NAME} 1`, '',
  ].join('\n'));
  const p = startProc(procs, [conf, '--sentinel'], `sentinel ${port}`);
  await waitFor(async () => {
    if (p.child.exitCode !== null) throw new Error(`sentinel ${port} exited: ${p.out()}`);
    return (await redisCommand(port, ['PING'], { timeoutMs: 500 }).catch(() => null)) === 'PONG';
  }, { timeoutMs: 10000, intervalMs: 50, what: `sentinel on ${port}` });
  return p;
}

/** The master's [ip, port] as sentinel SPORT reports it, or null. */
export const masterOf = async (sPort) => (await redisCommand(sPort, ['SENTINEL', 'get-master-addr-by-name', MASTER_NAME], { timeoutMs: 1000 }).catch(() => null));

/**
 * Starts the set and waits until the replica is in sync and every sentinel
 * knows the replica and the two others. Returns {mPort, rPort, sPorts,
 * storeYaml (a `store:` section that names only the sentinels),
 * killMaster(), waitPromoted(), stop()}.
 */
export async function startSentinelSet() {
  const procs = [];
  const mPort = await freePort();
  const rPort = await freePort();
  const master = await startServer(procs, mPort);
  await startServer(procs, rPort, ['--replicaof', '127.0.0.1', String(mPort)]);
  await waitFor(async () => /master_link_status:up/.test(await redisCommand(rPort, ['INFO', 'replication'])),
    { timeoutMs: 15000, intervalMs: 100, what: 'the replica in sync' });
  const sPorts = [await freePort(), await freePort(), await freePort()];
  for (const p of sPorts) await startSentinel(procs, p, mPort);
  await waitFor(async () => {
    for (const p of sPorts) {
      const others = await redisCommand(p, ['SENTINEL', 'sentinels', MASTER_NAME]).catch(() => []);
      const replicas = await redisCommand(p, ['SENTINEL', 'replicas', MASTER_NAME]).catch(() => []);
      if (others.length !== 2 || replicas.length !== 1) return false;
    }
    return true;
  }, { timeoutMs: 30000, intervalMs: 200, what: 'the sentinels to know each other and the replica' });
  return {
    mPort,
    rPort,
    sPorts,
    /** The store.redis keys that reach the master through the sentinels only (the URL's host is dead). */
    redis: { url: 'redis://127.0.0.1:1/0', timeout: '1s', sentinels: sPorts.map((p) => `127.0.0.1:${p}`), master_name: MASTER_NAME },
    storeYaml: `store:\n  backend: redis\n  redis:\n    url: "redis://127.0.0.1:1/0"\n    timeout: 1s\n` +
      `    sentinels: [${sPorts.map((p) => `"127.0.0.1:${p}"`).join(', ')}]\n    master_name: ${MASTER_NAME}\n`,
    /** Waits until the replica has every write the master acknowledged. */
    async sync() {
      const n = await redisCommand(mPort, ['WAIT', '1', '5000']);
      if (n !== 1) throw new Error(`WAIT 1: ${n} replicas acknowledged`);
    },
    killMaster: () => master.kill(),
    async waitPromoted() {
      await waitFor(async () => {
        const a = await masterOf(sPorts[0]);
        return Array.isArray(a) && a[1] === String(rPort);
      }, { timeoutMs: 30000, intervalMs: 100, what: 'the sentinels to promote the replica' });
    },
    async stop() {
      for (const p of procs.reverse()) await p.kill();
    },
  };
}
