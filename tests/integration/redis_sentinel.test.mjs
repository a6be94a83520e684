// Redis Sentinel (issue 10): a real master, one replica and three sentinels
// (`redis-server --sentinel`, quorum 2), the gateway configured with the
// sentinels only. The master is SIGKILLed; once the sentinels report the new
// master the gateway must follow: /readyz ready again, the failover counted,
// its pub/sub channels subscribed on the new master, the data written before
// the kill readable there, and a fresh store (the CLI) finds the new master too.
// Before that, the same sentinels named by host names (a Kubernetes service),
// resolved on the loop through a DNS server the test runs, and one name that
// does not resolve, skipped for the next.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { resolvConf, startDns } from '../lib/dns.mjs';
import { gatewayConfig, parseMetrics, redisCommand, request, runCli, startGateway, waitFor } from '../lib/harness.mjs';
import { MASTER_NAME, startSentinelSet } from '../lib/sentinel.mjs';

let set;

describe('Redis Sentinel', () => {
  let dns;
  after(async () => {
    await set?.stop();
    await dns?.close();
  });

  test('sentinels named by host names: resolved on the loop, a name that does not resolve skipped', { timeout: 60000 }, async () => {
    set = await startSentinelSet();
    const answers = new Map(set.sPorts.map((p, i) => [`sentinel-${i}.redis.test`, '127.0.0.1']));
    dns = await startDns(answers);
    // The first name does not resolve: the gateway says why and asks the next.
    const names = ['nowhere.redis.test:26379', ...set.sPorts.map((p, i) => `sentinel-${i}.redis.test:${p}`)];
    const extra = `store:\n  backend: redis\n  redis:\n    url: "redis://127.0.0.1:1/0"\n    timeout: 1s\n` +
      `    sentinels: [${names.map((n) => JSON.stringify(n)).join(', ')}]\n    master_name: ${MASTER_NAME}\n`;
    const gw = await startGateway({
      env: { MCPGATE_RESOLV_CONF: resolvConf(dns) },
      config: ({ port }) => gatewayConfig({ port }).replace('store:\n  backend: memory\n', '') + extra,
    });
    try {
      await waitFor(async () => (await request({ port: gw.port, path: '/readyz', timeoutMs: 3000 }).catch(() => ({ status: 0 }))).status === 200,
        { timeoutMs: 15000, intervalMs: 100, what: 'ready through sentinels found by name' });
      await gw.waitForLog((l) => l.module === 'store' && /connected/.test(l.msg) && new RegExp(`:${set.mPort}/`).test(l.addr || ''), 5000);
      assert.ok(dns.seen.includes('nowhere.redis.test'), 'the first name was looked up');
      assert.ok(dns.seen.includes('sentinel-0.redis.test'), 'then the next one');
      await gw.waitForLog((l) => l.module === 'store' && /sentinel not found/.test(l.msg) && l.sentinel === 'nowhere.redis.test', 5000);
    } finally {
      assert.equal(await gw.stop(), 0);
    }
  });

  test('the master is killed: the gateway follows the sentinels to the new master', { timeout: 90000 }, async () => {
    const { mPort, rPort } = set;
    const extra = set.storeYaml;
    const gw = await startGateway({ config: ({ port }) => gatewayConfig({ port }).replace('store:\n  backend: memory\n', '') + extra });
    try {
      const ready = async () => (await request({ port: gw.port, path: '/readyz', timeoutMs: 3000 }).catch(() => ({ status: 0 }))).status === 200;
      await waitFor(ready, { timeoutMs: 10000, intervalMs: 100, what: 'ready through the sentinels' });
      await gw.waitForLog((l) => l.module === 'store' && /connected/.test(l.msg) && new RegExp(`:${mPort}/`).test(l.addr || ''), 5000);

      // Data on the master, acknowledged by the replica before the kill.
      await redisCommand(mPort, ['SET', 'mcpgate:sentinel-test', 'before']);
      await set.sync();

      await set.killMaster();
      await set.waitPromoted();

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
