// Faults around STDIO routes and HTTP upstreams: crashing and killed
// children, overlong stdout lines, descriptor and child leaks over many
// sessions, children that ignore EOF and SIGTERM (the stop sequence, and
// stdio.max_processes while it runs), limits, commands that cannot start,
// idle expiry, bad requests, an unreachable or silent HTTP upstream, and
// SIGTERM with live sessions.
// README "What a client sees when something fails"; checklist §3.10, §5.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, describe, test } from 'node:test';

import { freePort, gatewayConfig, request, sleep, startBlackHole, startGateway, waitFor, withTimeout, writeTemp } from '../lib/harness.mjs';
import {
  McpClient, childPids, eventJson, fdCount, initializeMessage, mcpPost, mcpRequest, newChild, pidExists, procState,
  routesYaml, toolCall, toolText, whoamiRoute,
} from '../lib/mcp.mjs';

const ROUTE = '/mcp/who';

async function gateway({ route = {}, routes, limits, env } = {}) {
  return startGateway({
    config: ({ port }) => gatewayConfig({ port, limits, extra: routesYaml(routes || [whoamiRoute({ path: ROUTE, ...route })]) }),
    env,
  });
}

// Dead: no such process, or a zombie of whoever inherited it (it cannot run any more).
const gone = (pid) => !pidExists(pid) || procState(pid) === 'Z';
const zombies = (gwpid) => childPids(gwpid).filter((c) => procState(c) === 'Z');

describe('a child that dies mid-request', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('kill -9 during `slow`: the pending request gets a JSON-RPC error at once, no zombie, then 404', async (t) => {
    gw = await gateway();
    const c = new McpClient(gw.port, ROUTE);
    const before = childPids(gw.pid);
    await c.initialize();
    const child = await newChild(gw.pid, before);
    const r = await c.start(toolCall(5, 'slow', { seconds: 10, steps: 10 }, 'p'));
    assert.equal(r.status, 200);
    assert.equal((await r.sse.next(5000)).data, ''); // priming
    assert.equal(eventJson(await r.sse.next(5000)).params.progress, 1); // the request is in flight
    const t0 = performance.now();
    process.kill(child, 'SIGKILL');
    let err;
    for (;;) {
      const ev = await r.sse.next(3000);
      assert.ok(ev, 'the stream ended without an error response');
      const m = eventJson(ev);
      if (m?.id === 5) {
        err = m;
        break;
      }
    }
    const latency = performance.now() - t0;
    t.diagnostic(`kill -9 → JSON-RPC error: ${latency.toFixed(1)} ms`);
    assert.equal(err.error?.code, -32000, JSON.stringify(err));
    assert.match(err.error.message, /exit|signal|killed/i);
    assert.match(err.error.message, /9|KILL/);
    t.diagnostic(`error message: ${err.error.message}`);
    assert.ok(latency < 100, `the error took ${latency.toFixed(1)} ms after the kill (README: at once; limit 100 ms)`);
    assert.ok(await r.sse.waitEnd(2000), 'the POST stream did not end after the error');
    await waitFor(() => !pidExists(child), { timeoutMs: 3000, what: `the killed child ${child} to be reaped` });
    assert.deepEqual(zombies(gw.pid), []);
    const after = await c.request('tools/list');
    assert.equal(after.status, 404);
  });

  test('crash {signal: SEGV} and crash {code: 3}: every pending request fails with the exit named, then 404', async (t) => {
    const c = new McpClient(gw.port, ROUTE);
    const before = childPids(gw.pid);
    await c.initialize();
    const child = await newChild(gw.pid, before);
    // A JSON-pending slow call on another POST, then the crash.
    const slow = c.start(toolCall(6, 'slow', { seconds: 10, steps: 1 }));
    await sleep(100);
    const t0 = performance.now();
    const crash = await c.callTool('crash', { signal: 'SEGV' });
    const crashLatency = performance.now() - t0;
    assert.equal(crash.status, 200);
    assert.equal(crash.response.error?.code, -32000, JSON.stringify(crash.response));
    assert.match(crash.response.error.message, /signal 11|SIGSEGV/);
    const s = await slow;
    const sj = await s.json();
    assert.equal(sj.id, 6);
    assert.equal(sj.error?.code, -32000);
    assert.match(sj.error.message, /signal 11|SIGSEGV/);
    t.diagnostic(`crash SEGV → JSON-RPC error: ${crashLatency.toFixed(1)} ms after the POST`);
    await waitFor(() => !pidExists(child), { timeoutMs: 3000, what: 'the crashed child to be reaped' });
    assert.deepEqual(zombies(gw.pid), []);
    assert.equal((await c.request('ping')).status, 404);

    const c2 = new McpClient(gw.port, ROUTE);
    await c2.initialize();
    const exit3 = await c2.callTool('crash', { code: 3 });
    assert.equal(exit3.response.error?.code, -32000);
    assert.match(exit3.response.error.message, /exited with status 3/);
    assert.equal((await c2.request('ping')).status, 404);
    await waitFor(() => childPids(gw.pid).length === 0, { timeoutMs: 3000, what: 'no children left' });
  });
});

// An MCP server that ignores stdin EOF and SIGTERM, and keeps a grandchild
// (`sleep`) in its process group: only the whole stop sequence ends it.
const STUBBORN = `
const { spawn } = require('node:child_process');
process.on('SIGTERM', () => {});
const grandchild = spawn('/bin/sleep', ['60'], { stdio: 'ignore' });
const out = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  for (let i; (i = buf.indexOf('\\n')) >= 0;) {
    const m = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (m.id === undefined || !m.method) continue;
    if (m.method === 'initialize') {
      out({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'stubborn', version: '1' } } });
    } else if (m.method === 'tools/call') {
      out({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: String(grandchild.pid) }] } });
    } else {
      out({ jsonrpc: '2.0', id: m.id, result: {} });
    }
  }
});
process.stdin.on('end', () => {});
setInterval(() => {}, 1000);
`;

describe('the stop sequence', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('a child that ignores stdin EOF and SIGTERM is SIGKILLed with its process group after 2 × kill_grace', async (t) => {
    const script = writeTemp('stubborn-mcp.cjs', STUBBORN);
    gw = await gateway({ routes: [{ name: 'stubborn', path: ROUTE, auth: 'none', stdio: { command: [process.execPath, script], kill_grace: '300ms' } }] });
    const before = childPids(gw.pid);
    const c = new McpClient(gw.port, ROUTE);
    await c.initialize();
    const child = await newChild(gw.pid, before);
    const grandchild = Number(toolText((await c.callTool('pid')).response));
    assert.ok(grandchild > 0 && pidExists(grandchild), 'no grandchild');
    const t0 = Date.now();
    assert.equal(await c.delete(), 204);
    await waitFor(() => gone(child) && gone(grandchild), { timeoutMs: 5000, intervalMs: 20, what: 'the stubborn child and its grandchild to be killed' });
    const took = Date.now() - t0;
    t.diagnostic(`DELETE → stubborn child and grandchild gone: ${took} ms (kill_grace 300ms)`);
    assert.ok(took >= 500, `killed after ${took} ms: the grace steps were skipped`);
    assert.ok(took < 2500, `killed after ${took} ms`);
    // A SIGKILLed child is a zombie until the gateway's pidfd callback reaps it on the
    // next loop turn: wait for that (it must happen), do not sample the instant after.
    await waitFor(() => zombies(gw.pid).length === 0, { timeoutMs: 2000, intervalMs: 10, what: 'the killed child to be reaped' });
  });

  test('stdio.max_processes counts children still in their stop sequence', async (t) => {
    const script = writeTemp('stubborn-mcp-2.cjs', STUBBORN);
    const g2 = await gateway({ routes: [{ name: 'stubborn', path: ROUTE, auth: 'none', stdio: { command: [process.execPath, script], kill_grace: '1s', max_processes: 1 } }] });
    try {
      const running = () => childPids(g2.pid).filter((c) => procState(c) !== 'Z').length;
      let most = 0;
      const statuses = [];
      for (let i = 0; i < 3; i++) {
        const r = await mcpPost(g2.port, ROUTE, initializeMessage(1));
        statuses.push(r.status);
        most = Math.max(most, running());
        if (r.status !== 200) continue;
        const d = await mcpRequest({ port: g2.port, path: ROUTE, method: 'DELETE', session: r.headers['mcp-session-id'], accept: null });
        await d.body();
        most = Math.max(most, running());
      }
      t.diagnostic(`initialize statuses ${statuses}; most children running at once: ${most}`);
      assert.ok(most <= 1, `max_processes: 1, yet ${most} children of the route ran at once (initialize → ${statuses}): `
        + 'sessions ended by DELETE no longer count while their child is still being stopped');
    } finally {
      await g2.stop('SIGTERM', 8000);
    }
  });

  test('SIGTERM to the gateway ends stubborn children too, and it exits 0', async () => {
    const before = childPids(gw.pid);
    const c = new McpClient(gw.port, ROUTE);
    await c.initialize();
    const child = await newChild(gw.pid, before);
    const grandchild = Number(toolText((await c.callTool('pid')).response));
    assert.equal(await gw.stop('SIGTERM', 8000), 0);
    gw = null;
    await waitFor(() => gone(child) && gone(grandchild), { timeoutMs: 3000, what: 'the stubborn child and its grandchild to be gone after the gateway exited' });
  });
});

describe('stdout line limit', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('a 2 MiB line over max_line 1MiB fails that session cleanly; another session keeps working', async (t) => {
    gw = await gateway({ route: { stdio: { max_line: '1MiB' } } });
    const a = new McpClient(gw.port, ROUTE);
    const b = new McpClient(gw.port, ROUTE);
    await a.initialize();
    await b.initialize();
    const bSlow = b.start(toolCall(40, 'slow', { seconds: 0.8, steps: 2 }));
    const big = await a.callTool('big_line', { bytes: 2097152 });
    assert.equal(big.status, 200);
    assert.equal(big.response.error?.code, -32000, JSON.stringify(big.response).slice(0, 500));
    t.diagnostic(`error message: ${big.response.error.message}`);
    assert.match(big.response.error.message, /line/);
    assert.match(big.response.error.message, /1048576|max_line|limit|exceeds/);
    assert.equal((await a.request('ping')).status, 404);

    const sj = await (await bSlow).json();
    assert.match(toolText(sj), /^done/);
    const echo = await b.callTool('echo', { text: 'still here' });
    assert.equal(toolText(echo.response), 'still here');
    // Within the limit is fine.
    const ok = await b.callTool('big_line', { bytes: 512 * 1024 });
    assert.equal(toolText(ok.response).length, 512 * 1024);
    await b.delete();
  });
});

describe('500 sessions', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('initialize + DELETE 500 times: descriptors and children return to their baseline', async (t) => {
    gw = await gateway();
    const port = gw.port;
    const once = async () => {
      const r = await mcpPost(port, ROUTE, initializeMessage(1));
      assert.equal(r.status, 200, r.text);
      const sid = r.headers['mcp-session-id'];
      const d = await mcpRequest({ port, path: ROUTE, method: 'DELETE', session: sid, accept: null });
      await d.body();
      assert.equal(d.status, 204);
    };
    await once(); // warm up lazily created state
    await waitFor(() => childPids(gw.pid).length === 0, { timeoutMs: 5000, what: 'the warm-up child to go' });
    assert.equal((await request({ port, path: '/metrics' })).status, 200);
    const fdBase = fdCount(gw.pid);
    const started = Date.now();
    let next = 0;
    const N = 500;
    const worker = async () => {
      while (next < N) {
        next++;
        await once();
      }
    };
    await withTimeout(Promise.all([worker(), worker(), worker(), worker()]), 90000, '500 sessions');
    t.diagnostic(`500 sessions in ${Date.now() - started} ms`);
    await waitFor(() => childPids(gw.pid).length === 0, { timeoutMs: 10000, what: `children to return to 0 (now ${childPids(gw.pid).length})` });
    await waitFor(() => fdCount(gw.pid) <= fdBase + 2, { timeoutMs: 5000, what: `fds to return to ${fdBase} (+2) (now ${fdCount(gw.pid)})` });
    t.diagnostic(`fds: baseline ${fdBase}, after ${fdCount(gw.pid)}`);
    const m = await request({ port, path: '/metrics' });
    assert.equal(m.status, 200);
    assert.match(m.body, /mcpgate_http_requests_total/);
  });
});

describe('limits', () => {
  const gws = [];
  after(async () => {
    for (const g of gws) await g.stop();
  });

  test('stdio.max_processes: 2 → a third initialize gets 503 + Retry-After naming the limit', async () => {
    const gw = await gateway({ route: { stdio: { max_processes: 2 } } });
    gws.push(gw);
    const a = new McpClient(gw.port, ROUTE);
    const b = new McpClient(gw.port, ROUTE);
    await a.initialize();
    await b.initialize();
    const third = await mcpPost(gw.port, ROUTE, initializeMessage(1));
    assert.equal(third.status, 503);
    assert.ok(third.headers['retry-after'], 'no Retry-After');
    assert.equal(third.json.error.code, -32001);
    assert.match(third.json.error.message, /max_processes/);
    assert.equal(third.headers['mcp-session-id'], undefined);
    assert.equal(childPids(gw.pid).length, 2);
    await a.delete();
    // A slot frees when the child is gone, not when DELETE answers: a child
    // still in its stop sequence counts against the limit.
    await waitFor(() => childPids(gw.pid).filter((c) => !gone(c)).length === 1, {
      timeoutMs: 5000, what: 'the deleted session\'s child to be reaped',
    });
    const again = new McpClient(gw.port, ROUTE);
    await again.initialize(); // a slot is free again
    await again.delete();
    await b.delete();
  });

  test('server.limits.max_sessions_per_user: 1 → a new session evicts the idle one; a busy one is kept and the new one gets 503', async () => {
    const gw = await gateway({ limits: { max_sessions_per_user: 1 } });
    gws.push(gw);
    const before = childPids(gw.pid);
    const a = new McpClient(gw.port, ROUTE);
    await a.initialize();
    const first = await newChild(gw.pid, before);
    // a is idle: a client that never sends DELETE must not lock its user out (review F19).
    const b = new McpClient(gw.port, ROUTE);
    await b.initialize();
    assert.equal((await a.request('ping')).status, 404, 'the evicted session still answers');
    await waitFor(() => gone(first), { timeoutMs: 5000, what: 'the evicted session\'s child to end' });
    // b is busy (a request in flight): it is not evicted, the newcomer is refused.
    const slow = await b.start(toolCall(9, 'slow', { seconds: 5, steps: 5 }, 'p'));
    assert.equal((await slow.sse.next(5000)).data, ''); // priming: the request is in flight
    const third = await mcpPost(gw.port, ROUTE, initializeMessage(1));
    assert.equal(third.status, 503);
    assert.ok(third.headers['retry-after']);
    assert.equal(third.json.error.code, -32001);
    assert.match(third.json.error.message, /max_sessions_per_user/);
    // The legacy transport counts too.
    const legacy = await mcpRequest({ port: gw.port, path: `${ROUTE}/sse`, method: 'GET' });
    assert.equal(legacy.status, 503);
    await legacy.body();
    await b.delete();
  });
});

describe('a command that cannot start', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('initialize → 502 with a JSON-RPC error; no session, no child left', async () => {
    gw = await gateway({ routes: [{ name: 'broken', path: ROUTE, auth: 'none', stdio: { command: ['/nonexistent/bin'] } }] });
    const fdBase = fdCount(gw.pid);
    const r = await mcpPost(gw.port, ROUTE, initializeMessage(1));
    assert.equal(r.status, 502);
    assert.equal(r.json.error.code, -32000);
    assert.match(r.json.error.message, /could not be started|cannot start/);
    assert.equal(r.headers['mcp-session-id'], undefined);
    assert.deepEqual(childPids(gw.pid), []);
    assert.ok(fdCount(gw.pid) <= fdBase, `descriptors left behind: ${fdBase} → ${fdCount(gw.pid)}`);
    const legacy = await mcpRequest({ port: gw.port, path: `${ROUTE}/sse`, method: 'GET' });
    assert.equal(legacy.status, 502);
    await legacy.body();
    assert.deepEqual(childPids(gw.pid), []);
  });
});

describe('idle timeout', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('stdio.idle_timeout: 1s → requests keep the session; 1.5 s without one and it answers 404 and the child is gone', async () => {
    gw = await gateway({ route: { stdio: { idle_timeout: '1s' } } });
    const before = childPids(gw.pid);
    const c = new McpClient(gw.port, ROUTE);
    await c.initialize();
    const child = await newChild(gw.pid, before);
    // Requests 200 ms apart for 2 s: each moves the deadline on (twice the timeout in all).
    for (let i = 0; i < 10; i++) {
      await sleep(200);
      assert.equal((await c.request('ping')).status, 200, `a request did not move the idle deadline on (ping ${i})`);
    }
    await sleep(1500);
    assert.equal((await c.request('ping')).status, 404);
    await waitFor(() => !pidExists(child), { timeoutMs: 5000, what: 'the idle child to be reaped' });
  });

  test('a session whose GET stream outlived the idle timeout expires once the stream closes', async () => {
    const before = childPids(gw.pid);
    const c = new McpClient(gw.port, ROUTE);
    await c.initialize();
    const child = await newChild(gw.pid, before);
    const g = await mcpRequest({ port: gw.port, path: ROUTE, method: 'GET', session: c.session, protocolVersion: c.version });
    assert.equal(g.status, 200);
    await sleep(1500); // an open stream keeps the session
    assert.ok(pidExists(child) && procState(child) !== 'Z', 'the session ended while its GET stream was open');
    g.close();
    await sleep(2000); // > idle_timeout after the stream closed
    const r = await mcpRequest({ port: gw.port, path: ROUTE, method: 'DELETE', session: c.session, accept: null });
    await r.body();
    assert.equal(r.status, 404, 'the session never expired after its GET stream closed (idle timer not re-armed)');
  });
});

describe('bad requests do not hurt the session', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('malformed JSON 400, 128 KiB over max_body 64KiB 413, wrong Content-Type 415: each followed by a working request', async () => {
    gw = await gateway({ limits: { max_body: '64KiB' } });
    const c = new McpClient(gw.port, ROUTE);
    await c.initialize();
    const works = async () => {
      const e = await c.callTool('echo', { text: 'ok' });
      assert.equal(toolText(e.response), 'ok');
    };
    const bad = await mcpPost(gw.port, ROUTE, undefined, { ...c.opts(), rawBody: '{"jsonrpc":"2.0","id":1,"method":' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, -32700);
    await works();
    const big = toolCall(99, 'echo', { text: 'x'.repeat(128 * 1024) });
    let status;
    try {
      const r = await mcpPost(gw.port, ROUTE, big, c.opts());
      status = r.status;
    } catch (e) {
      assert.fail(`the 128 KiB body got no answer: ${e.message}`);
    }
    assert.equal(status, 413);
    await works();
    const ct = await mcpPost(gw.port, ROUTE, toolCall(98, 'echo', { text: 'y' }), { ...c.opts(), contentType: 'text/plain' });
    assert.equal(ct.status, 415);
    await works();
    await c.delete();
  });
});

describe('HTTP upstream down', () => {
  let gw;
  after(async () => {
    if (gw) await gw.stop();
  });

  test('connection refused → 502 with a JSON-RPC error body', async () => {
    const dead = await freePort();
    const hole = await startBlackHole();
    gw = await gateway({
      routes: [
        { name: 'remote', path: '/mcp/remote', auth: 'none', http: { url: `http://127.0.0.1:${dead}/mcp` } },
        { name: 'hole', path: '/mcp/hole', auth: 'none', http: { url: `http://127.0.0.1:${hole.port}/mcp`, timeout: '1s' } },
      ],
    });
    const r = await mcpPost(gw.port, '/mcp/remote', initializeMessage(1));
    assert.equal(r.status, 502);
    assert.match(r.contentType, /^application\/json/);
    assert.equal(r.json.jsonrpc, '2.0');
    assert.equal(r.json.error.code, -32000);
    assert.match(r.json.error.message, /unreachable/);
    assert.equal((await request({ port: gw.port, path: '/healthz' })).status, 200);
  });

  test('an upstream that never answers → 504 with a JSON-RPC error body after http.timeout', async () => {
    const t0 = Date.now();
    const r = await mcpPost(gw.port, '/mcp/hole', initializeMessage(1));
    const took = Date.now() - t0;
    assert.equal(r.status, 504);
    assert.equal(r.json.error.code, -32000);
    assert.match(r.json.error.message, /too slow/);
    assert.ok(took >= 900 && took < 4000, `answered after ${took} ms with timeout: 1s`);
  });
});

describe('SIGTERM with active sessions', () => {
  test('the gateway lets the in-flight call finish, exits 0 within its grace, and no child remains', async (t) => {
    const gw = await gateway({ limits: { shutdown_grace: '3s' } });
    const port = gw.port;
    const idle = new McpClient(port, ROUTE);
    const busy = new McpClient(port, ROUTE);
    const streaming = new McpClient(port, ROUTE);
    await idle.initialize();
    await busy.initialize();
    await streaming.initialize();
    const g = await mcpRequest({ port, path: ROUTE, method: 'GET', session: streaming.session, protocolVersion: streaming.version });
    assert.equal(g.status, 200);
    const kids = childPids(gw.pid);
    assert.equal(kids.length, 3);
    const call = busy.start(toolCall(7, 'slow', { seconds: 1, steps: 1 }));
    await sleep(150);
    const t0 = Date.now();
    const rc = await gw.stop('SIGTERM', 8000);
    const took = Date.now() - t0;
    assert.equal(rc, 0);
    t.diagnostic(`SIGTERM → exit: ${took} ms (shutdown_grace 3s)`);
    assert.ok(took < 3000, `exit took ${took} ms with a 3 s grace and a 1 s call`);
    const j = await (await call).json();
    assert.match(toolText(j), /^done/, `the in-flight call did not finish: ${JSON.stringify(j)}`);
    assert.ok(g.sse.ended, 'the GET stream was not ended');
    await waitFor(() => kids.every(gone), { timeoutMs: 3000, what: `children ${kids} to be gone` });
  });

  test('an open 2024-11-05 SSE connection does not hold the shutdown for the whole grace', async (t) => {
    const gw = await gateway({ limits: { shutdown_grace: '3s' } });
    const port = gw.port;
    const idle = new McpClient(port, ROUTE);
    await idle.initialize();
    const legacy = await mcpRequest({ port, path: `${ROUTE}/sse`, method: 'GET' });
    assert.equal(legacy.status, 200);
    assert.equal((await legacy.sse.next(5000)).event, 'endpoint');
    await waitFor(() => childPids(gw.pid).length === 2, { what: 'two children' });
    const kids = childPids(gw.pid);
    const t0 = Date.now();
    const rc = await gw.stop('SIGTERM', 8000);
    const took = Date.now() - t0;
    t.diagnostic(`SIGTERM → exit with a legacy SSE client: ${took} ms (shutdown_grace 3s)`);
    assert.equal(rc, 0);
    assert.ok(legacy.sse.ended, 'the legacy SSE stream was not ended');
    await waitFor(() => kids.every(gone), { timeoutMs: 3000, what: `children ${kids} to be gone` });
    // Nothing is in flight: like the Streamable HTTP GET stream, the legacy
    // stream should be ended at once by the drain (README "Signals").
    assert.ok(took < 1500, `exit took ${took} ms: the drain waited the whole shutdown_grace for the legacy SSE stream`);
  });
});
