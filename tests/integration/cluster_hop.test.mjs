// The hop between instances (proxy/cluster.h), attacked from the internal
// network: two gateways on one real Redis; A advertises its internal
// listener through a recording TCP relay, so the test holds the exact bytes
// B sent A for a forwarded tools/call. Replaying them, or changing any header
// the MAC covers, is refused with 403 and counted; the genuine hop worked.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { freePort, gatewayConfig, parseMetrics, rawRequest, request, startGateway, startRedis, waitFor, writeSecret } from '../lib/harness.mjs';
import { McpClient, routesYaml, toolText, whoamiRoute } from '../lib/mcp.mjs';

const ROUTE = '/mcp/who';
let redis;
let relay;
let a;
let b;
let aInternal;
const captured = []; // the bytes of each connection B opened to A, in order

/** A TCP relay to 127.0.0.1:TARGET that records what clients send. */
function startRelay(target) {
  return new Promise((resolve) => {
    const server = net.createServer((sock) => {
      const rec = { bytes: Buffer.alloc(0) };
      captured.push(rec);
      const up = net.connect(target, '127.0.0.1');
      sock.on('data', (d) => {
        rec.bytes = Buffer.concat([rec.bytes, d]);
        up.write(d);
      });
      up.on('data', (d) => sock.write(d));
      sock.on('close', () => up.destroy());
      up.on('close', () => sock.destroy());
      sock.on('error', () => up.destroy());
      up.on('error', () => sock.destroy());
    });
    server.listen(0, '127.0.0.1', () => resolve({ port: server.address().port, close: () => server.close() }));
  });
}

/** The first whole HTTP request in BYTES (headers and a Content-Length body), as text. */
function firstRequest(bytes) {
  const text = bytes.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
  const total = end + 4 + (m ? Number(m[1]) : 0);
  return text.length >= total ? text.slice(0, total) : null;
}

async function hopCounters(gw) {
  const r = await request({ port: gw.port, path: '/metrics' });
  const m = parseMetrics(r.body);
  return { received: m.get('mcpgate_cluster_hops_received_total'), refused: m.get('mcpgate_cluster_hops_refused_total') };
}

function config(port, internal, advertise, secretFile, redisUrl) {
  return gatewayConfig({
    port,
    store: { url: redisUrl },
    extra: `cluster:\n  listen: "127.0.0.1:${internal}"\n  advertise: "${advertise}"\n  secret_file: "${secretFile}"\n  heartbeat: 1s\n` +
      routesYaml([whoamiRoute({ path: ROUTE })]),
  });
}

before(async () => {
  redis = await startRedis();
  const secret = writeSecret();
  aInternal = await freePort();
  const bInternal = await freePort();
  relay = await startRelay(aInternal);
  a = await startGateway({ config: ({ port }) => config(port, aInternal, `http://127.0.0.1:${relay.port}`, secret, redis.url) });
  b = await startGateway({ config: ({ port }) => config(port, bInternal, `http://127.0.0.1:${bInternal}`, secret, redis.url) });
});

after(async () => {
  if (b) assert.equal(await b.stop(), 0);
  if (a) assert.equal(await a.stop(), 0);
  relay?.close();
  await redis?.stop();
});

describe('the hop between instances', () => {
  let hop; // the request B sent A, as bytes on the wire

  test('a session made on A is served through B, by a hop that verifies', async () => {
    const owner = new McpClient(a.port, ROUTE);
    await owner.initialize();
    assert.match(owner.session, /^[A-Za-z0-9_-]{8}\./, 'a cluster session id names its owner');
    const viaB = new McpClient(b.port, ROUTE);
    viaB.session = owner.session;
    viaB.version = owner.version;
    const r = await viaB.callTool('whoami');
    assert.equal(r.status, 200, r.text);
    assert.ok(toolText(r.response), 'the tool answered through the hop');
    const c = await hopCounters(a);
    assert.equal(c.received, 1);
    assert.equal(c.refused, 0);
    await waitFor(() => captured.some((rec) => firstRequest(rec.bytes)), { what: 'the hop to be recorded' });
    hop = firstRequest(captured.find((rec) => firstRequest(rec.bytes)).bytes);
    assert.match(hop, /\r\nx-mcpgate-hop: \d+\.[A-Za-z0-9_-]{8}\.\d+\.[0-9a-f]{64}\r\n/i);
    assert.match(hop, /\r\nmcp-session-id: /i);
  });

  const send = async (text) => {
    const res = await rawRequest(aInternal, [text], { untilClose: false });
    return res;
  };

  test('the same bytes sent again are refused: a hop is accepted once', async () => {
    const r = await send(hop);
    assert.match(r, /^HTTP\/1\.1 403 /, r);
    assert.equal((await hopCounters(a)).refused, 1);
    assert.equal((await hopCounters(a)).received, 1);
  });

  for (const [what, edit] of [
    ['another session id', (t) => t.replace(/(\r\nmcp-session-id: )([^\r]*)/i, (_, h, v) => h + v.slice(0, -1) + (v.endsWith('A') ? 'B' : 'A'))],
    ['an Authorization header added', (t) => t.replace('\r\n\r\n', '\r\nAuthorization: Bearer stolen\r\n\r\n')],
    ['a Last-Event-ID added', (t) => t.replace('\r\n\r\n', '\r\nLast-Event-ID: 1\r\n\r\n')],
    ['another protocol version', (t) => t.replace(/(\r\nmcp-protocol-version: )[^\r]*/i, '$12025-03-26')],
    ['the sequence number moved on', (t) => t.replace(/(x-mcpgate-hop: \d+\.[A-Za-z0-9_-]{8}\.)(\d+)/i, (_, h, n) => h + String(Number(n) + 1000))],
    ['another client address', (t) => t.replace(/(\r\nx-mcpgate-client: )[^ \r]+/i, '$1203.0.113.9')],
  ]) {
    test(`a hop with ${what} does not verify`, async () => {
      const before = (await hopCounters(a)).refused;
      const edited = edit(hop);
      assert.notEqual(edited, hop, 'the edit changed nothing');
      const r = await send(edited);
      assert.match(r, /^HTTP\/1\.1 403 /, r);
      assert.equal((await hopCounters(a)).refused, before + 1);
    });
  }

  test('hops keep flowing after the refusals: each new one is fresh', async () => {
    const owner = new McpClient(a.port, ROUTE);
    await owner.initialize();
    const viaB = new McpClient(b.port, ROUTE);
    viaB.session = owner.session;
    viaB.version = owner.version;
    for (let i = 0; i < 5; i++) {
      const r = await viaB.callTool('whoami');
      assert.equal(r.status, 200, r.text);
    }
    assert.equal((await hopCounters(a)).received, 6);
  });
});
