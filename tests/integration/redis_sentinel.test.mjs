// Redis Sentinel (issue 10): a real master, one replica and three sentinels
// (`redis-server --sentinel`, quorum 2), the gateway configured with the
// sentinels only. The master is SIGKILLed; once the sentinels report the new
// master the gateway must follow: /readyz ready again, the failover counted,
// its pub/sub channels subscribed on the new master, the data written before
// the kill readable there, and a fresh store (the CLI) finds the new master too.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { gatewayConfig, parseMetrics, redisCommand, request, runCli, startGateway, waitFor } from '../lib/harness.mjs';
import { startSentinelSet } from '../lib/sentinel.mjs';

let set;

describe('Redis Sentinel', () => {
  after(async () => {
    await set?.stop();
  });

  test('the master is killed: the gateway follows the sentinels to the new master', { timeout: 90000 }, async () => {
    set = await startSentinelSet();
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
