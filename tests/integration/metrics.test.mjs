// What operators watch, read from a real gateway's /metrics while real
// sessions run (README "Metrics"): tools/call by route, tool and outcome, with
// the tool label bounded; upstream latency; per-route sessions, streams and
// children; the store's latency; metrics.max_series; and every metric name the
// shipped Grafana dashboard (deploy/grafana/mcpgate.json) uses is exposed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REPO, gatewayConfig, parseMetrics, request, startGateway, waitFor } from '../lib/harness.mjs';
import { McpClient, childPids, mcpPost, mcpRequest, routesYaml, toolCall, whoamiRoute } from '../lib/mcp.mjs';

const ROUTE = '/mcp/who';
let gw;

before(async () => {
  gw = await startGateway({
    config: ({ port }) => gatewayConfig({
      port,
      metrics: { max_series: 12 },
      extra: routesYaml([whoamiRoute({
        name: 'who',
        path: ROUTE,
        modern: true, // modern is per origin: every route or none
        tools: [{ match: 'crash', deny: true }, { match: 'secret_*', deny: true }],
      }), whoamiRoute({ name: 'mod', path: '/mcp/mod', modern: true })]),
    }),
  });
});

after(async () => {
  if (gw) assert.equal(await gw.stop(), 0, 'mcpgate did not exit 0 on SIGTERM');
});

async function metrics() {
  const r = await request({ port: gw.port, path: '/metrics' });
  assert.equal(r.status, 200, r.body);
  return { text: r.body, m: parseMetrics(r.body) };
}

const calls = (m, tool, outcome) => m.get(`mcpgate_tool_calls_total{route="who",tool="${tool}",outcome="${outcome}"}`);

describe('per-route metrics', () => {
  let c;

  test('tools/call outcomes, each under its tool or "other"', async () => {
    c = new McpClient(gw.port, ROUTE);
    await c.initialize();
    for (let i = 0; i < 3; i++) assert.equal((await c.callTool('echo', { text: `x${i}` })).status, 200);
    // A tool's own failure: whoami answers bad arguments with isError (2025-11-25).
    const bad = await c.callTool('add', { a: 'not a number' });
    assert.equal(bad.json.result?.isError, true, bad.text);
    // Refused by the policy: a configured name keeps its label, a glob match does not.
    assert.ok((await c.callTool('crash', {})).json.error, 'crash was not refused');
    assert.ok((await c.callTool('secret_one', {})).json.error, 'secret_one was not refused');
    // Names the upstream does not know: JSON-RPC errors, never labels of their own.
    for (let i = 0; i < 20; i++) assert.ok((await c.callTool(`no_such_tool_${i}`, {})).json.error);

    const { m } = await metrics();
    assert.equal(calls(m, 'echo', 'ok'), 3);
    assert.equal(calls(m, 'add', 'tool_error'), 1);
    assert.equal(calls(m, 'crash', 'refused'), 1);
    assert.equal(calls(m, 'other', 'refused'), 1, 'a glob-matched name must count as "other"');
    assert.equal(calls(m, 'other', 'error'), 20);
    const labels = [...m.keys()].filter((k) => k.startsWith('mcpgate_tool_calls_total{'));
    assert.ok(!labels.some((k) => k.includes('no_such_tool') || k.includes('secret_one')), `client-chosen names became labels: ${labels}`);
  });

  test('upstream latency, per-route sessions, streams and children', async () => {
    const { m } = await metrics();
    const count = m.get('mcpgate_upstream_request_duration_seconds_count{route="who"}');
    assert.ok(count >= 25, `upstream latency count ${count}: every answered request (initialize, calls) is observed`);
    assert.equal(m.get('mcpgate_upstream_request_duration_seconds_bucket{route="who",le="+Inf"}'), count);
    assert.equal(m.get('mcpgate_route_sessions{route="who"}'), 1);
    assert.equal(m.get('mcpgate_route_children{route="who"}'), 1);
    assert.equal(m.get('mcpgate_route_streams{route="who"}'), 0);

    // A GET stream is a stream of the route while it is open.
    const get = await mcpRequest({ port: gw.port, path: ROUTE, method: 'GET', session: c.session, protocolVersion: c.version });
    assert.equal(get.status, 200);
    await waitFor(async () => (await metrics()).m.get('mcpgate_route_streams{route="who"}') === 1, { what: 'the GET stream to be counted' });
    get.close();
    await waitFor(async () => (await metrics()).m.get('mcpgate_route_streams{route="who"}') === 0, { what: 'the GET stream to be gone' });
  });

  test('a session that ends leaves its calls counted and its gauges at zero', async () => {
    assert.equal(await c.delete(), 204);
    await waitFor(async () => {
      const { m } = await metrics();
      return m.get('mcpgate_route_sessions{route="who"}') === 0 && m.get('mcpgate_route_children{route="who"}') === 0;
    }, { what: 'the session and its child to be gone from the gauges' });
    const { m } = await metrics();
    assert.equal(calls(m, 'echo', 'ok'), 3);
  });

  test('a child that dies mid-call: the call counts as failed', async () => {
    // The upstream dies under a slow call (crash itself is denied on this route).
    const d = new McpClient(gw.port, ROUTE);
    await d.initialize();
    // With a progress token the answer is an event stream, and its first progress
    // event proves the call is pending in the child.
    const r = await d.start(toolCall(d.nextId++, 'slow', { seconds: 30, steps: 30 }, 'p1'));
    assert.ok(r.sse, `not an event stream: ${r.status} ${r.contentType}`);
    let first;
    do first = await r.sse.next(10000); while (first && first.data === ''); // the priming event
    assert.match(first?.data ?? '', /notifications\/progress/);
    const kids = childPids(gw.pid);
    assert.equal(kids.length, 1, `children: ${kids}`);
    process.kill(kids[0], 'SIGKILL');
    const rest = await r.sse.rest(10000);
    assert.ok(rest.some((e) => /"error"/.test(e.data)), `the slow call was not failed: ${JSON.stringify(rest)}`);
    // slow never answered on this route and no rule names it: its label is "other".
    await waitFor(async () => calls((await metrics()).m, 'other', 'failed') === 1, { what: 'the failed call to be counted' });
    assert.equal(calls((await metrics()).m, 'slow', 'failed'), undefined);
  });

  test('2026-07-28 requests are counted like the others', async () => {
    const meta = {
      'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientCapabilities': {},
      'io.modelcontextprotocol/clientInfo': { name: 'metrics-test', version: '1' },
    };
    const r = await mcpPost(gw.port, '/mcp/mod', { jsonrpc: '2.0', id: 'm1', method: 'tools/call', params: { name: 'echo', arguments: { text: 'modern' }, _meta: meta } },
      { protocolVersion: '2026-07-28', headers: { 'mcp-method': 'tools/call', 'mcp-name': 'echo' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result.content[0].text, 'modern');
    const { m } = await metrics();
    assert.equal(m.get('mcpgate_tool_calls_total{route="mod",tool="echo",outcome="ok"}'), 1);
    assert.ok(m.get('mcpgate_upstream_request_duration_seconds_count{route="mod"}') >= 1);
    assert.equal(m.get('mcpgate_route_children{route="mod"}'), 1, 'the modern pool child is a child of the route');
  });

  test('the store latency histogram and the fixed rows are exposed', async () => {
    const { m } = await metrics();
    assert.ok(m.has('mcpgate_store_operation_duration_seconds_count'), 'no store latency histogram');
    for (const name of ['mcpgate_bearer_cache_hits_total', 'mcpgate_bearer_cache_misses_total', 'mcpgate_cluster_forwarded_total', 'mcpgate_cluster_owner_gone_total', 'mcpgate_cluster_hops_received_total', 'mcpgate_cluster_hops_refused_total']) assert.ok(m.has(name), `${name} missing`);
  });

  test('metrics.max_series bounds a family: new label sets fold into "other"', async () => {
    // http requests by route and status: 12 series at most. Unknown paths are route "-";
    // statuses differ by method and path, so ask for many distinct ones.
    for (const p of ['/nope', '/.well-known/oauth-authorization-server', '/healthz', '/readyz', '/register', '/token', '/authorize']) {
      for (const method of ['GET', 'POST', 'DELETE', 'PUT']) await request({ port: gw.port, path: p, method });
    }
    const { m } = await metrics();
    const series = [...m.keys()].filter((k) => k.startsWith('mcpgate_http_requests_total{'));
    assert.ok(series.length <= 13, `${series.length} series: ${series}`);
    assert.ok(series.includes('mcpgate_http_requests_total{route="other",status="other"}'), `no overflow series: ${series}`);
  });

  test('every metric the Grafana dashboard queries is exposed by name', async () => {
    const dash = JSON.parse(fs.readFileSync(path.join(REPO, 'deploy', 'grafana', 'mcpgate.json'), 'utf8'));
    const exprs = [];
    const walk = (v) => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) (k === 'expr' ? exprs.push(x) : walk(x));
    };
    walk(dash);
    assert.ok(exprs.length >= 8, `the dashboard has ${exprs.length} queries`);
    const used = new Set(exprs.flatMap((e) => e.match(/mcpgate_[a-z_]+/g) || []));
    const { text } = await metrics();
    const exposed = new Set([...text.matchAll(/^# TYPE (mcpgate_[a-z_]+) (\w+)/gm)].flatMap(([, n, t]) => (t === 'histogram' ? [`${n}_bucket`, `${n}_sum`, `${n}_count`] : [n])));
    const missing = [...used].filter((n) => !exposed.has(n));
    assert.deepEqual(missing, [], 'dashboard queries name metrics mcpgate does not expose');
  });
});
