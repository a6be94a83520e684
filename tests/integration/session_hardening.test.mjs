// STDIO sessions under hostile use (review F5, F15, F19): a 2024-11-05
// client that stops reading loses its session and its child instead of
// keeping them forever; auth: none callers are told apart by address; the
// requests one session may have in flight are capped. Real children
// (examples/whoami-server), real HTTP over loopback.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { gatewayConfig, startGateway, waitFor } from '../lib/harness.mjs';
import { McpClient, childPids, initializeMessage, mcpPost, mcpRequest, routesYaml, toolCall, whoamiRoute } from '../lib/mcp.mjs';

const ROUTE = '/mcp/who';
let gw;
after(async () => {
  if (gw) assert.equal(await gw.stop(), 0);
});
const start = async (limits) => {
  if (gw) await gw.stop();
  gw = await startGateway({ config: ({ port }) => gatewayConfig({ port, limits, extra: routesYaml([whoamiRoute({ path: ROUTE })]) }) });
};

describe('STDIO sessions under hostile use', () => {
  test('a 2024-11-05 client that stops reading: its session ends and its child goes (F5)', async () => {
    await start({ sse_high_water: '64KiB' });
    const s = await mcpRequest({ port: gw.port, path: `${ROUTE}/sse`, method: 'GET' });
    assert.equal(s.status, 200);
    const endpoint = (await s.sse.next(5000)).data;
    const send = (m) => mcpPost(gw.port, endpoint, m);
    assert.equal((await send(initializeMessage(1, { protocolVersion: '2024-11-05' }))).status, 202);
    await waitFor(() => childPids(gw.pid).length === 1, { what: 'the child' });
    s.res.pause(); // the client stops reading
    for (let id = 2; id < 8; id++) await send(toolCall(id, 'big_line', { bytes: 2 * 1024 * 1024 })).catch(() => {});
    await waitFor(() => childPids(gw.pid).length === 0, { timeoutMs: 15000, what: 'the child of the stuck session to go' });
    await waitFor(() => gw.logs().some((l) => l.msg === 'session ended'), { what: 'the session to end' });
    const after = await send(toolCall(9, 'whoami'));
    assert.equal(after.status, 404, 'the session is gone');
    s.close();
  });

  test('auth: none: a session belongs to the client address that opened it; limits count per address (F15)', async () => {
    await start({ max_sessions_per_user: 1 });
    const a = new McpClient(gw.port, ROUTE);
    await a.initialize();
    const foreign = await mcpPost(gw.port, ROUTE, toolCall(2, 'whoami'), { ...a.opts(), localAddress: '127.0.0.2' });
    assert.equal(foreign.status, 404, "another address cannot use this address's session");
    // The cap is per address: 127.0.0.2 gets a session of its own although 127.0.0.1 is at 1.
    const b = await mcpPost(gw.port, ROUTE, initializeMessage(1), { localAddress: '127.0.0.2' });
    assert.equal(b.status, 200, b.text);
    assert.equal((await a.callTool('whoami')).status, 200, 'the first session still works');
  });

  test('requests in flight per session are capped at max_pending_per_session: the next gets 503 -32001 (F19)', async () => {
    await start({ max_pending_per_session: 2 });
    const c = new McpClient(gw.port, ROUTE);
    await c.initialize();
    const slow = [c.callTool('slow', { seconds: 3, steps: 1 }), c.callTool('slow', { seconds: 3, steps: 1 })];
    let third;
    await waitFor(async () => {
      third = await c.callTool('whoami');
      return third.status === 503;
    }, { timeoutMs: 2500, intervalMs: 100, what: 'the third request to be refused while two are in flight' });
    assert.equal(third.json.error.code, -32001);
    assert.match(third.json.error.message, /max_pending_per_session/);
    assert.ok(third.headers['retry-after']);
    for (const r of await Promise.all(slow)) assert.equal(r.status, 200);
    assert.equal((await c.callTool('whoami')).status, 200, 'served again once they are done');
  });

  test('the event ring is bounded in bytes: a client that left gets back the newest events within event_ring_bytes (F8)', async () => {
    await start({ event_ring_bytes: '4KiB' });
    const c = new McpClient(gw.port, ROUTE);
    await c.initialize();
    const h = await c.start(toolCall(5, 'slow', { seconds: 1.5, steps: 40 }, 'ring-tok'));
    assert.equal(h.status, 200);
    const first = await h.sse.next(5000);
    assert.ok(first?.id, 'a priming event with an id');
    const key = first.id.slice(0, first.id.lastIndexOf('_'));
    h.close(); // the client leaves; the request runs on and its events go to the ring
    // Resume after the priming event. While the tool runs, a resumed stream goes on live;
    // once its answer has been seen the stream is over, and a replay is the ring alone.
    const replayed = async () => {
      const g = await mcpRequest({ port: gw.port, path: ROUTE, method: 'GET', ...c.opts(), lastEventId: `${key}_0` });
      const got = [];
      for (;;) {
        const ev = await g.sse.next(500).catch(() => null);
        if (!ev) break;
        if (ev.data) got.push(ev);
      }
      g.close();
      return got;
    };
    await waitFor(async () => (await replayed()).some((e) => JSON.parse(e.data).id === 5), { timeoutMs: 10000, intervalMs: 300, what: 'the answer' });
    const events = await replayed();
    const bytes = events.reduce((n, e) => n + Buffer.byteLength(e.data), 0);
    assert.ok(bytes <= 4096, `${bytes} bytes replayed, more than event_ring_bytes`);
    const progress = events.map((e) => JSON.parse(e.data)).filter((m) => m.method === 'notifications/progress').map((m) => m.params.progress);
    assert.ok(progress.length < 40 && progress[0] > 1, `the oldest went first: ${progress.join(',')}`);
    assert.equal(JSON.parse(events.at(-1).data).id, 5, 'the newest (the answer) is kept');
  });
});
