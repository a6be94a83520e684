// store.redis.url with a host name (a compose or Kubernetes service name):
// resolved on the gateway's loop through its own resolver, here pointed by
// MCPGATE_RESOLV_CONF at a DNS server this test runs on loopback (issue 10).
// The gateway serves, /readyz says why while the name does not resolve,
// and it recovers once it does.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { resolvConf, startDns } from '../lib/dns.mjs';
import { gatewayConfig, startGateway, startRedis, waitFor } from '../lib/harness.mjs';

describe('a Redis host name, resolved on the loop', () => {
  let gw;
  let dns;
  after(async () => {
    if (gw) assert.equal(await gw.stop(), 0);
    await dns?.close();
  });

  test('redis://redis.mcpgate.test: ready through the resolver; a name that does not resolve says so and recovers', async () => {
    const redis = await startRedis();
    const answers = new Map();
    dns = await startDns(answers);
    const resolv = resolvConf(dns);
    gw = await startGateway({
      env: { MCPGATE_RESOLV_CONF: resolv },
      config: ({ port }) => gatewayConfig({ port, store: { url: `redis://redis.mcpgate.test:${redis.port}/0`, timeout: '500ms' } }),
    });
    const ready = async () => {
      const r = await fetch(`${gw.url}/readyz`);
      return { status: r.status, text: await r.text() };
    };
    let last;
    await waitFor(async () => {
      last = await ready();
      return last.status === 503 && /cannot resolve redis\.mcpgate\.test/.test(last.text);
    }, { timeoutMs: 10000, what: `the unresolved name in /readyz (${last?.text})` });
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200, 'the loop serves while the name does not resolve');
    answers.set('redis.mcpgate.test', '127.0.0.1');
    await waitFor(async () => (await ready()).status === 200, { timeoutMs: 20000, intervalMs: 200, what: 'ready once the name resolves' });
    assert.ok(dns.seen.includes('redis.mcpgate.test'));
    const before = dns.seen.length;
    await redis.restart();
    await waitFor(async () => (await ready()).status === 200 && dns.seen.length > before, { timeoutMs: 20000, intervalMs: 200, what: 'the name resolved again on reconnect' });
  });

  // libevent 2.1 delivers a cancelled lookup's answer on a later turn of the loop:
  // the gateway's shutdown gives it that turn (store_shutdown_finish), and the
  // sanitizer's exit check in stop() finds nothing leaked.
  test('stopped while a Redis host-name lookup is in flight: a clean exit, nothing leaked', async () => {
    const answers = new Map([['silent.mcpgate.test', 'silent']]);
    const quiet = await startDns(answers);
    const g = await startGateway({
      env: { MCPGATE_RESOLV_CONF: resolvConf(quiet) },
      config: ({ port }) => gatewayConfig({ port, store: { url: 'redis://silent.mcpgate.test:6379/0', timeout: '10s' } }),
    });
    try {
      await waitFor(async () => quiet.seen.includes('silent.mcpgate.test'), { timeoutMs: 10000, what: 'the lookup sent' });
    } finally {
      assert.equal(await g.stop(), 0);
      await quiet.close();
    }
  });
});
