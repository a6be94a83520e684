// store.redis.url with a host name (a compose or Kubernetes service name):
// resolved on the gateway's loop through its own resolver, here pointed by
// MCPGATE_RESOLV_CONF at a DNS server this test runs on loopback (issue 10).
// The gateway serves, /readyz says why while the name does not resolve,
// and it recovers once it does.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import { after, describe, test } from 'node:test';

import { gatewayConfig, startGateway, startRedis, tmpDir, waitFor } from '../lib/harness.mjs';

/** A DNS server answering A queries for names in ANSWERS (name → IPv4); NXDOMAIN otherwise. */
async function startDns(answers) {
  const sock = dgram.createSocket('udp4');
  const seen = [];
  sock.on('message', (msg, rinfo) => {
    // Header (12 bytes), then one question: labels, type, class.
    let i = 12;
    const labels = [];
    while (msg[i] !== 0) {
      labels.push(msg.subarray(i + 1, i + 1 + msg[i]).toString('latin1'));
      i += msg[i] + 1;
    }
    const qEnd = i + 5;
    const name = labels.join('.').toLowerCase();
    const type = msg.readUInt16BE(i + 1);
    seen.push(name);
    const ip = type === 1 ? answers.get(name) : undefined;
    const head = Buffer.from(msg.subarray(0, 12));
    head.writeUInt16BE(0x8180 | (ip || type !== 1 ? 0 : 3), 2); // response, RD, RA; rcode 3 NXDOMAIN
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(ip ? 1 : 0, 6);
    head.writeUInt16BE(0, 8);
    head.writeUInt16BE(0, 10);
    const parts = [head, msg.subarray(12, qEnd)];
    if (ip) {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
      rr.writeUInt16BE(1, 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(5, 6);
      rr.writeUInt16BE(4, 10);
      ip.split('.').forEach((o, k) => rr.writeUInt8(Number(o), 12 + k));
      parts.push(rr);
    }
    sock.send(Buffer.concat(parts), rinfo.port, rinfo.address);
  });
  await new Promise((r) => sock.bind(0, '127.0.0.1', r));
  return { port: sock.address().port, seen, close: () => new Promise((r) => sock.close(r)) };
}

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
    const dir = tmpDir('mcpgate-dns-');
    const resolv = `${dir}/resolv.conf`;
    fs.writeFileSync(resolv, `nameserver 127.0.0.1:${dns.port}\n`);
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
});
