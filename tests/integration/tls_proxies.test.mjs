// Optional TLS on the listener (OpenSSL, TLS 1.2 and later only) and
// X-Forwarded-For / -Proto believed only from server.trusted_proxies.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';

import { freePort, request, startGateway, teardownAll, tmpDir, waitFor } from '../lib/harness.mjs';

after(teardownAll);

function selfSigned() {
  const dir = tmpDir('mcpgate-tls-');
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { key, cert };
}

function httpsGet(port, pathname, ca, extra = {}) {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: pathname, ca, ...extra, timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

function handshake(port, options) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
      const v = s.getProtocol();
      s.end();
      resolve({ ok: true, version: v });
    });
    s.on('error', (e) => resolve({ ok: false, error: e.code || e.message }));
  });
}

describe('TLS listener', () => {
  test('https serves with the configured certificate; TLS 1.0/1.1 are refused; a bad key path is a clear start error', async () => {
    const { key, cert } = selfSigned();
    const port = await freePort();
    const gw = await startGateway({
      port,
      health: false,
      config: `server:\n  listen: ["127.0.0.1:${port}"]\n  public_url: https://127.0.0.1:${port}\n  tls: { cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }\nstore: { backend: memory }\n`,
    });
    const fs = await import('node:fs');
    const ca = fs.readFileSync(cert);
    await waitFor(async () => (await httpsGet(port, '/healthz', ca).catch(() => ({}))).status === 200, { what: 'https /healthz' });
    const r = await httpsGet(port, '/readyz', ca);
    assert.equal(r.status, 200);
    const t12 = await handshake(port, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    assert.ok(t12.ok, `TLS 1.2 refused: ${t12.error}`);
    const t13 = await handshake(port, { minVersion: 'TLSv1.3' });
    assert.ok(t13.ok && t13.version === 'TLSv1.3', `TLS 1.3: ${JSON.stringify(t13)}`);
    const t11 = await handshake(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
    assert.equal(t11.ok, false, 'TLS 1.1 must be refused');
    // Plain HTTP on the TLS port is not served.
    const plain = await request({ port, path: '/healthz', timeoutMs: 1500 }).catch((e) => ({ error: e.message }));
    assert.notEqual(plain.status, 200);
    assert.equal(await gw.stop(), 0);

    const port2 = await freePort();
    await assert.rejects(startGateway({
      port: port2,
      config: `server:\n  listen: ["127.0.0.1:${port2}"]\n  public_url: https://127.0.0.1:${port2}\n  tls: { cert: ${JSON.stringify(cert)}, key: "/nonexistent/key.pem" }\nstore: { backend: memory }\n`,
      startTimeoutMs: 3000,
    }), /TLS setup failed|key|nonexistent|No such file/i);
  });
});

describe('trusted proxies', () => {
  async function clientOf(gw, headers) {
    const r = await request({ port: gw.port, path: '/healthz', headers });
    assert.equal(r.status, 200);
    const id = r.headers['x-request-id'];
    await waitFor(() => gw.logs().some((l) => l.module === 'access' && l.request_id === id), { what: 'access line' });
    return gw.logs().find((l) => l.module === 'access' && l.request_id === id).client;
  }

  test('X-Forwarded-For is believed only from a trusted proxy, right-most untrusted entry wins', async () => {
    const port = await freePort();
    const trusted = await startGateway({
      port,
      config: `server:\n  listen: ["127.0.0.1:${port}"]\n  public_url: http://127.0.0.1:${port}\n  trusted_proxies: [127.0.0.1/32, 10.0.0.0/8]\nstore: { backend: memory }\n`,
    });
    assert.equal(await clientOf(trusted, { 'X-Forwarded-For': '203.0.113.9' }), '203.0.113.9');
    // A client-supplied left part is not believed: the right-most untrusted hop is the client.
    assert.equal(await clientOf(trusted, { 'X-Forwarded-For': '1.2.3.4, 198.51.100.7, 10.1.2.3' }), '198.51.100.7');
    // A proxy that adds a line of its own instead of appending: the lines are one list (F13).
    assert.equal(await clientOf(trusted, { 'X-Forwarded-For': ['1.2.3.4', '198.51.100.8'] }), '198.51.100.8');
    assert.equal(await clientOf(trusted, { 'X-Forwarded-For': 'garbage' }), '127.0.0.1');
    assert.equal(await clientOf(trusted, {}), '127.0.0.1');
    assert.equal(await trusted.stop(), 0);

    const port2 = await freePort();
    const untrusted = await startGateway({
      port: port2,
      config: `server:\n  listen: ["127.0.0.1:${port2}"]\n  public_url: http://127.0.0.1:${port2}\nstore: { backend: memory }\n`,
    });
    assert.equal(await clientOf(untrusted, { 'X-Forwarded-For': '203.0.113.9' }), '127.0.0.1');
    assert.equal(await untrusted.stop(), 0);
  });
});
