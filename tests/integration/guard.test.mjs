// The gate every client message passes (proxy/guard.c, review F1 and F18),
// through the real binary, in front of upstreams that are as lenient as the
// TypeScript SDK (an id of 1.0 read as 1, any message with a method
// dispatched) and that record what reaches them. On every transport:
// Streamable POST, batches, the 2024-11-05 /messages POST, STDIO and HTTP.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REPO, gatewayConfig, startGateway, waitFor } from '../lib/harness.mjs';
import { McpClient, initializeMessage, mcpPost, mcpRequest, routesYaml } from '../lib/mcp.mjs';

const LENIENT = path.join(REPO, 'tests', 'fixtures', 'mcp', 'lenient-server.mjs');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-guard-'));
const stdioRecord = path.join(dir, 'stdio.log');
const httpRecord = [];

/** The HTTP upstream: lenient like the STDIO one, JSON answers, records bodies. */
async function startLenientHttp() {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      if (req.method !== 'POST') {
        res.writeHead(req.method === 'DELETE' ? 200 : 405);
        res.end();
        return;
      }
      httpRecord.push(body);
      let m;
      try {
        m = JSON.parse(body);
      } catch {
        res.writeHead(400);
        res.end();
        return;
      }
      if (m.id === undefined || m.id === null) {
        res.writeHead(202);
        res.end();
        return;
      }
      const result = m.method === 'initialize'
        ? { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'lenient-http', version: '1' } }
        : { content: [{ type: 'text', text: JSON.stringify({ ran: m.params?.name, meta: m.params?._meta ?? null }) }] };
      res.writeHead(200, { 'content-type': 'application/json', ...(m.method === 'initialize' ? { 'mcp-session-id': 'h-1' } : {}) });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }) };
}

const POLICY = {
  tools: [{ match: 'secret_tool', deny: true }],
  resources: { rules: [{ match: 'public://*' }, { match: 'file:///public/*' }], default: 'deny' },
  identity: { meta: true },
};
let gw;
let up;
before(async () => {
  up = await startLenientHttp();
  gw = await startGateway({
    config: ({ port }) => gatewayConfig({
      port,
      extra: routesYaml([
        { name: 'stdio', path: '/mcp/stdio', auth: 'none', stdio: { command: ['node', LENIENT], env: { RECORD_FILE: stdioRecord } }, ...POLICY },
        { name: 'http', path: '/mcp/http', auth: 'none', http: { url: `http://127.0.0.1:${up.port}/mcp` }, ...POLICY },
      ]),
    }),
  });
});
after(async () => {
  if (gw) assert.equal(await gw.stop(), 0);
  await up?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const stdioSeen = () => (fs.existsSync(stdioRecord) ? fs.readFileSync(stdioRecord, 'utf8') : '');
/** What reached the upstream of ROUTE ('stdio' or 'http') so far. */
const seen = (route) => (route === 'stdio' ? stdioSeen() : httpRecord.join('\n'));

/** Hostile bodies: each must be refused and must never reach an upstream. */
const HOSTILE = [
  ['an id of 1.0', '{"jsonrpc":"2.0","id":1.0,"method":"tools/call","params":{"name":"secret_tool","arguments":{}}}', -32600],
  ['an id of 1e0', '{"jsonrpc":"2.0","id":1e0,"method":"tools/call","params":{"name":"secret_tool","arguments":{}}}', -32600],
  ['an id of null', '{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"secret_tool","arguments":{}}}', -32600],
  ['an id of true', '{"jsonrpc":"2.0","id":true,"method":"tools/call","params":{"name":"secret_tool","arguments":{}}}', -32600],
  ['a notification (no id)', '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"secret_tool","arguments":{}}}', null],
  ['a name that is an array', '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":["secret_tool"],"arguments":{}}}', -32602],
  ['a name given twice', '{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"public_tool","name":"secret_tool"}}', -32600],
  ['a denied tool with a string id', '{"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"secret_tool","arguments":{}}}', -32602],
];
const marker = (body) => (body.includes('secret_tool') ? 'secret_tool' : null);

describe('Streamable HTTP POST: nothing the policy denies reaches the child or the HTTP upstream', () => {
  for (const route of ['stdio', 'http']) {
    for (const [what, raw, code] of HOSTILE) {
      test(`${route}: ${what}`, async () => {
        const c = new McpClient(gw.port, `/mcp/${route}`, { protocolVersion: '2025-06-18' });
        await c.initialize();
        const r = await mcpPost(gw.port, `/mcp/${route}`, undefined, { ...c.opts(), rawBody: raw });
        assert.ok([200, 400, 403].includes(r.status), `status ${r.status}: ${r.text}`);
        if (code !== null) assert.equal(r.json?.error?.code ?? r.response?.error?.code, code, r.text);
        else assert.notEqual(r.status, 202, 'a governed notification is not accepted');
        // A later allowed call completes, so anything forwarded before it has arrived.
        const ok = await c.callTool('public_tool');
        assert.equal(ok.status, 200);
        assert.ok(!seen(route).includes(marker(raw)), `the upstream received:\n${seen(route)}`);
      });
    }
  }

  test('a batch (2025-03-26) with one denied message: none of the batch is forwarded', async () => {
    const c = new McpClient(gw.port, '/mcp/stdio', { protocolVersion: '2025-03-26' });
    await c.initialize();
    const raw = '[{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"public_tool"}},{"jsonrpc":"2.0","id":21.0,"method":"tools/call","params":{"name":"secret_tool"}}]';
    const r = await mcpPost(gw.port, '/mcp/stdio', undefined, { ...c.opts(), rawBody: raw });
    assert.equal(r.status, 400);
    assert.ok(!stdioSeen().includes('"id":21'), 'the batch reached the child');
  });

  test('a forged io.mcpgate/principal is replaced by the caller\'s identity (identity.meta: true)', async () => {
    for (const route of ['stdio', 'http']) {
      const c = new McpClient(gw.port, `/mcp/${route}`, { protocolVersion: '2025-06-18' });
      await c.initialize();
      const raw = JSON.stringify({ jsonrpc: '2.0', id: 30, method: 'tools/call', params: { name: 'public_tool', _meta: { 'io.mcpgate/principal': { sub: 'boss', roles: ['manager'] } } } });
      const r = await mcpPost(gw.port, `/mcp/${route}`, undefined, { ...c.opts(), rawBody: raw });
      assert.equal(r.status, 200, r.text);
      const ran = JSON.parse(r.response.result.content[0].text);
      assert.equal(ran.ran, 'public_tool');
      assert.notEqual(ran.meta?.['io.mcpgate/principal']?.sub, 'boss', `${route}: the forged principal reached the upstream`);
      assert.equal(ran.meta['io.mcpgate/principal'].sub, 'anonymous');
    }
  });

  test('resources/subscribe, templates and completion are governed; URIs are normalised before matching (F18)', async () => {
    const c = new McpClient(gw.port, '/mcp/stdio', { protocolVersion: '2025-06-18' });
    await c.initialize();
    const ok = await c.request('resources/subscribe', { uri: 'public://a' });
    assert.equal(ok.status, 200);
    assert.ok(ok.response.result, JSON.stringify(ok.response));
    for (const uri of ['secret://a', 'file:///public/../secret/x', 'file:///public/%2e%2e/secret/x', 'file:///public/a%2Fb']) {
      const r = await c.request('resources/subscribe', { uri });
      assert.ok(r.response?.error, `${uri} was allowed: ${JSON.stringify(r.response)}`);
      const read = await c.request('resources/read', { uri });
      assert.equal(read.response?.error?.code, -32002, `${uri}: resources/read`);
    }
    const comp = await c.request('completion/complete', { ref: { type: 'ref/resource', uri: 'secret://{x}' }, argument: { name: 'x', value: '' } });
    assert.ok(comp.response?.error, 'completion for a denied resource template');
    const t = await c.request('resources/templates/list');
    assert.deepEqual(t.response.result.resourceTemplates.map((x) => x.uriTemplate), ['public://{x}']);
    await waitFor(() => stdioSeen().includes('templates/list'), { what: 'the child to record' });
    assert.ok(!/secret:\/\/a|\/secret\/x|a%2Fb/.test(stdioSeen()), `the child received:\n${stdioSeen()}`);
  });
});

describe('2024-11-05 /messages: the same gate (F1 as the review reproduced it)', () => {
  for (const route of ['stdio', 'http']) {
    test(`${route}: id 1.0 with a forged principal, a notification, an array name: refused on the stream, never forwarded`, async () => {
      const s = await mcpRequest({ port: gw.port, path: `/mcp/${route}/sse`, method: 'GET' });
      assert.equal(s.status, 200);
      const endpoint = (await s.sse.next(5000)).data;
      const send = (raw) => mcpPost(gw.port, endpoint, undefined, { rawBody: raw });
      const next = async () => {
        for (;;) {
          const ev = await s.sse.next(10000);
          assert.ok(ev, 'the stream ended');
          if (ev.data && ev.event === 'message') return JSON.parse(ev.data);
        }
      };
      assert.equal((await send(JSON.stringify(initializeMessage(1, { protocolVersion: '2024-11-05' })))).status, 202);
      assert.equal((await next()).id, 1);
      assert.equal((await send('{"jsonrpc":"2.0","method":"notifications/initialized"}')).status, 202);
      const forged = await send('{"jsonrpc":"2.0","id":1.0,"method":"tools/call","params":{"name":"secret_tool","_meta":{"io.mcpgate/principal":{"sub":"boss","roles":["manager"]}}}}');
      assert.equal(forged.status, 400, 'an unclassifiable message is refused on the POST');
      assert.equal(forged.json.error.code, -32600);
      const note = await send('{"jsonrpc":"2.0","method":"tools/call","params":{"name":"secret_tool"}}');
      assert.notEqual(note.status, 202, 'a governed notification is refused');
      assert.equal((await send('{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"secret_tool"}}')).status, 202);
      const denied = await next();
      assert.equal(denied.id, 2);
      assert.equal(denied.error.code, -32602, 'the refusal arrives on the stream, like an unknown tool');
      assert.equal((await send('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"public_tool"}}')).status, 202);
      const ok = await next();
      assert.equal(ok.id, 3);
      assert.ok(!seen(route).includes('secret_tool'), `the upstream received:\n${seen(route)}`);
      assert.ok(!seen(route).includes('boss'));
      s.close();
    });
  }
});
