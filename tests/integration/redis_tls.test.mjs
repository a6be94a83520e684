// rediss://: the store over TLS to a real redis-server 7 with its TLS port
// (issue 10). A test CA, a server certificate for 127.0.0.1 and localhost and
// a client certificate are made here with the openssl CLI. Proves: PING,
// reads and pub/sub go through TLS; a reconnect after a restart is TLS again;
// a wrong CA and a wrong server name are refused with the reason in the log
// and in /readyz; a client certificate is sent when the server requires one.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { after, describe, test } from 'node:test';

import {
  REDIS_SERVER, freePort, gatewayConfig, parseMetrics, request, runCli, startGateway, teardownAll, tmpDir, waitFor, withTimeout,
} from '../lib/harness.mjs';

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA, and certificates it signs: server (127.0.0.1, localhost), client; plus an unrelated CA. */
function makeCerts() {
  const dir = tmpDir('mcpgate-tls-redis-');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  for (const ca of ['ca', 'other-ca']) {
    openssl(['req', '-x509', ...ec, '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=mcpgate test ${ca}`], dir);
  }
  const sign = (name, ext) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`], dir);
  };
  sign('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  sign('client', 'extendedKeyUsage=clientAuth\n');
  const f = (n) => path.join(dir, n);
  return { dir, ca: f('ca.pem'), otherCa: f('other-ca.pem'), cert: f('client.pem'), key: f('client.key'), serverCert: f('server.pem'), serverKey: f('server.key') };
}

/** Sends COMMAND lines on a TLS connection to redis; resolves with the raw text once it has MATCH. */
function tlsRedis(port, certs, text, match, { withClientCert = true, timeoutMs = 3000 } = {}) {
  return new Promise((resolve, reject) => {
    const opts = { port, host: '127.0.0.1', ca: fs.readFileSync(certs.ca), servername: 'localhost' };
    if (withClientCert) Object.assign(opts, { cert: fs.readFileSync(certs.cert), key: fs.readFileSync(certs.key) });
    const s = tls.connect(opts);
    let buf = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`tls redis ${port}: no ${match} in ${JSON.stringify(buf)}`)); }, timeoutMs);
    s.once('secureConnect', () => s.write(text));
    s.on('data', (d) => {
      buf += d;
      if (match.test(buf)) {
        clearTimeout(timer);
        s.destroy();
        resolve(buf);
      }
    });
    s.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** redis-server with only a TLS port. authClients: 'no' | 'optional' | 'yes'. */
async function startTlsRedis(certs, authClients) {
  const port = await freePort();
  const dir = tmpDir('mcpgate-redis-tls-');
  const args = ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--logfile', '', '--tls-cert-file', certs.serverCert, '--tls-key-file', certs.serverKey,
    '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', authClients];
  let child;
  let out = '';
  const launch = async () => {
    child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const me = child;
    await waitFor(async () => {
      if (me.exitCode !== null) throw new Error(`redis-server exited: ${out.slice(-2000)}`);
      try {
        return /\+PONG/.test(await tlsRedis(port, certs, 'PING\r\n', /\+PONG/, { timeoutMs: 500 }));
      } catch {
        return false;
      }
    }, { timeoutMs: 10000, intervalMs: 100, what: `TLS redis-server on ${port}` });
  };
  const kill = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await withTimeout(gone, 5000, 'redis-server exiting');
    }
  };
  await launch();
  return { port, kill, restart: async () => { await kill(); await launch(); } };
}

const readyz = async (gw) => {
  const r = await request({ port: gw.port, path: '/readyz', timeoutMs: 5000 });
  return { status: r.status, text: r.body };
};

describe('rediss:// (TLS to Redis)', () => {
  const certs = makeCerts();
  const redisServers = [];
  after(async () => {
    for (const r of redisServers) await r.kill();
    await teardownAll?.();
  });

  test('the store works over TLS: ready, a CLI read, pub/sub, a reconnect after a restart', async () => {
    const redis = await startTlsRedis(certs, 'optional');
    redisServers.push(redis);
    const store = { url: `rediss://127.0.0.1:${redis.port}/0`, timeout: '1s', tls_ca_file: certs.ca };
    const gw = await startGateway({
      config: ({ port }) => gatewayConfig({ port, store }),
    });
    try {
      await waitFor(async () => (await readyz(gw)).status === 200, { timeoutMs: 10000, intervalMs: 100, what: 'ready over TLS' });
      // The gateway's links show up on the TLS port; the pubsub one is subscribed.
      const clients = await tlsRedis(redis.port, certs, 'CLIENT LIST\r\n', /\r\n$/);
      assert.match(clients, /cmd=subscribe/, `no subscribed gateway link in ${clients}`);
      // A read through the store, by the CLI, over TLS.
      const cli = await runCli(['grants', 'list', '-c', gw.configPath, '--user', 'nobody']);
      assert.equal(cli.code, 0, cli.stderr);
      // A value a client writes over TLS is published to the gateway: PUBLISH reaches it.
      const pub = await tlsRedis(redis.port, certs, 'PUBSUB NUMSUB x\r\nPUBSUB CHANNELS *\r\n', /\*\d+\r\n[\s\S]*\*\d+\r\n/);
      assert.match(pub, /mcpgate:/, `no mcpgate channel subscribed: ${pub}`);

      await redis.restart();
      await waitFor(async () => (await readyz(gw)).status === 200, { timeoutMs: 15000, intervalMs: 100, what: 'ready again after the restart' });
      await gw.waitForLog((l) => l.module === 'store' && /reconnected/.test(l.msg), 5000);
      const m = parseMetrics((await request({ port: gw.port, path: '/metrics' })).body);
      assert.equal(m.get('mcpgate_store_up'), 1);
      assert.ok(m.get('mcpgate_store_reconnects_total') >= 1);
    } finally {
      assert.equal(await gw.stop(), 0);
    }
  });

  const refused = [
    ['a CA that did not sign the server certificate', { tls_ca_file: certs.otherCa }, /certificate verify failed/],
    ['a server name the certificate does not carry', { tls_ca_file: certs.ca, tls_server_name: 'redis.wrong.example' }, /certificate verify failed: hostname mismatch/i],
    ['no client certificate where the server requires one', { tls_ca_file: certs.ca }, /TLS|closed|reset/, 'yes'],
  ];
  for (const [what, tlsKeys, why, auth = 'optional'] of refused) {
    test(`refused: ${what}; /readyz says why`, async () => {
      const redis = await startTlsRedis(certs, auth);
      redisServers.push(redis);
      const store = { url: `rediss://127.0.0.1:${redis.port}/0`, timeout: '1s', ...tlsKeys };
      const gw = await startGateway({ config: ({ port }) => gatewayConfig({ port, store }) });
      try {
        let last;
        await waitFor(async () => {
          last = await readyz(gw);
          return last.status === 503 && why.test(last.text);
        }, { timeoutMs: 10000, intervalMs: 100, what: `503 with ${why} (last: ${last?.status} ${last?.text})` });
        await gw.waitForLog((l) => l.module === 'store' && why.test(l.error || ''), 5000);
        assert.equal((await request({ port: gw.port, path: '/healthz' })).status, 200, 'the loop still serves');
      } finally {
        assert.equal(await gw.stop(), 0);
      }
    });
  }

  test('a client certificate is sent when the server requires one', async () => {
    const redis = await startTlsRedis(certs, 'yes');
    redisServers.push(redis);
    const store = { url: `rediss://localhost:${redis.port}/0`, timeout: '1s', tls_ca_file: certs.ca, tls_cert_file: certs.cert, tls_key_file: certs.key };
    const gw = await startGateway({ config: ({ port }) => gatewayConfig({ port, store }) });
    try {
      await waitFor(async () => (await readyz(gw)).status === 200, { timeoutMs: 10000, intervalMs: 100, what: 'ready with a client certificate' });
      // Without a client certificate, this server refuses plain clients: the cert was what let us in.
      await assert.rejects(tlsRedis(redis.port, certs, 'PING\r\n', /\+PONG/, { withClientCert: false, timeoutMs: 2000 }));
    } finally {
      assert.equal(await gw.stop(), 0);
    }
  });

  test('Sentinel over TLS (sentinel_tls): the master is asked of a TLS-only sentinel, then reached over TLS', async () => {
    const master = await startTlsRedis(certs, 'optional');
    redisServers.push(master);
    const sPort = await freePort();
    const dir = tmpDir('mcpgate-tls-sentinel-');
    const conf = path.join(dir, 'sentinel.conf');
    fs.writeFileSync(conf, [
      'port 0', `tls-port ${sPort}`, 'bind 127.0.0.1', `dir ${dir}`, 'logfile ""',
      `tls-cert-file ${certs.serverCert}`, `tls-key-file ${certs.serverKey}`, `tls-ca-cert-file ${certs.ca}`,
      `tls-client-cert-file ${certs.cert}`, `tls-client-key-file ${certs.key}`,
      'tls-replication yes', 'tls-auth-clients optional',
      `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`, '',
    ].join('\n'));
    const child = spawn(REDIS_SERVER, [conf, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    redisServers.push({ kill: async () => { if (child.exitCode === null && child.signalCode === null) { const gone = new Promise((r) => child.once('exit', r)); child.kill('SIGKILL'); await gone; } } });
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`sentinel exited: ${out.slice(-2000)}`);
      return /\+PONG/.test(await tlsRedis(sPort, certs, 'PING\r\n', /\+PONG/, { timeoutMs: 500 }).catch(() => ''));
    }, { timeoutMs: 10000, intervalMs: 100, what: 'the TLS sentinel' });
    const store = (extra) => `store:\n  backend: redis\n  redis:\n    url: "rediss://127.0.0.1:1/0"\n    timeout: 1s\n` +
      `    tls_ca_file: "${certs.ca}"\n    tls_cert_file: "${certs.cert}"\n    tls_key_file: "${certs.key}"\n` +
      `    sentinels: ["127.0.0.1:${sPort}"]\n${extra}`;
    const config = (extra) => ({ port }) => gatewayConfig({ port }).replace('store:\n  backend: memory\n', '') + store(extra);
    // Plain to a TLS-only sentinel: not ready, and /readyz says which sentinel failed.
    const plain = await startGateway({ config: config('') });
    try {
      let last;
      await waitFor(async () => {
        last = await readyz(plain);
        return last.status === 503 && new RegExp(`sentinel 127\\.0\\.0\\.1:${sPort}`).test(last.text);
      }, { timeoutMs: 10000, intervalMs: 100, what: `/readyz to name the sentinel (${last?.text})` });
    } finally {
      assert.equal(await plain.stop(), 0);
    }
    const gw = await startGateway({ config: config('    sentinel_tls: true\n') });
    try {
      await waitFor(async () => (await readyz(gw)).status === 200, { timeoutMs: 10000, intervalMs: 100, what: 'ready through the TLS sentinel' });
      await gw.waitForLog((l) => l.module === 'store' && /connected/.test(l.msg) && new RegExp(`:${master.port}/`).test(l.addr || ''), 5000);
    } finally {
      assert.equal(await gw.stop(), 0);
    }
  });

  test('sentinel_tls without rediss:// is a config error with file and line', async () => {
    const dir = tmpDir('mcpgate-tls-conf-');
    const file = path.join(dir, 'c.yaml');
    fs.writeFileSync(file, gatewayConfig({ port: 8080 }).replace('store:\n  backend: memory\n', '') +
      'store:\n  backend: redis\n  redis:\n    url: "redis://127.0.0.1:1/0"\n    sentinels: ["127.0.0.1:26379"]\n    sentinel_tls: true\n');
    const r = await runCli(['check-config', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr + r.stdout, /c\.yaml:\d+:\d+: store\.redis: sentinel_tls needs a rediss:\/\/ url/);
  });

  test('a config error for TLS keys without rediss:// names file and line', async () => {
    const dir = tmpDir('mcpgate-tls-conf-');
    const file = path.join(dir, 'c.yaml');
    fs.writeFileSync(file, gatewayConfig({ port: 8080, store: { url: 'redis://127.0.0.1:6379', tls_ca_file: certs.ca } }));
    const r = await runCli(['check-config', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr + r.stdout, /c\.yaml:\d+:\d+: store\.redis: tls_ca_file needs a rediss:\/\/ url/);
  });
});
