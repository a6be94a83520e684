// A DNS server on loopback for tests of names resolved on the gateway's loop
// (the gateway reads it through MCPGATE_RESOLV_CONF). Used by
// integration/redis_names and integration/redis_sentinel.
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';

import { tmpDir } from './harness.mjs';

/** A DNS server answering A queries for names in ANSWERS (name → IPv4); NXDOMAIN otherwise. */
export async function startDns(answers) {
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
    if (answers.get(name) === 'silent') return; // never answered: the lookup stays in flight
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


/** A resolv.conf naming DNS (from startDns), in a new temporary directory; returns its path. */
export function resolvConf(dns) {
  const file = path.join(tmpDir('mcpgate-dns-'), 'resolv.conf');
  fs.writeFileSync(file, `nameserver 127.0.0.1:${dns.port}\n`);
  return file;
}
