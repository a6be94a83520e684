// make soak: mixed hostile and well-behaved load through the real (release)
// binary for SOAK_SECONDS (default 600), while Redis is restarted twice and
// children are SIGKILLed at random. Ends by printing RSS, open descriptors,
// children and sessions at the start and the end, and exits 1 when any grew
// beyond its bound or a well-behaved client saw an answer that is not one
// of the documented ones (README "What a client sees when something fails").
import fs from 'node:fs';
import net from 'node:net';

import { freePort, parseMetrics, sleep, startGateway, startRedis, teardownAll, waitFor } from '../lib/harness.mjs';
import { WHOAMI_BIN, childPids, fdCount, initializeMessage, mcpPost, mcpRequest, toolCall } from '../lib/mcp.mjs';
import { oauthGatewayConfig, obtainTokens, refresh, startIdp } from '../lib/oauth.mjs';

const SECONDS = Number(process.env.SOAK_SECONDS || 600);
const RSS_GROWTH_MIB = Number(process.env.SOAK_RSS_GROWTH_MIB || 64);
const FD_GROWTH = Number(process.env.SOAK_FD_GROWTH || 16);
const deadline = Date.now() + SECONDS * 1000;
const live = () => Date.now() < deadline;

const stats = { ok: 0, documented: {}, undocumented: [], hostile: 0 };
const note = (kind) => { stats.documented[kind] = (stats.documented[kind] || 0) + 1; };
const bad = (what) => {
  if (stats.undocumented.length < 20) stats.undocumented.push(what);
  else stats.undocumented.length++;
};

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function sample(gw) {
  const m = parseMetrics(await (await fetch(`${gw.url}/metrics`)).text());
  const g = (n) => m.get(n) ?? 0;
  return {
    rss_mib: Math.round(rssKiB(gw.pid) / 102.4) / 10,
    fds: fdCount(gw.pid),
    children: childPids(gw.pid).length,
    sessions: g('mcpgate_sessions'),
    connections: g('mcpgate_http_open_connections'),
  };
}

/** Sorts one answer of a well-behaved client: ok, documented (which), or not. */
function judge(r, what) {
  if (r.status === 200 || r.status === 202) {
    const e = r.response?.error;
    if (!e) return stats.ok++;
    if (e.code === -32000 && /upstream process (exited|failed)/.test(e.message)) return note('child killed: -32000');
    return bad(`${what}: ${r.status} ${JSON.stringify(e)}`);
  }
  if (r.status === 503) return note('503 (store down or a limit)');
  if (r.status === 404) return note('404 (session ended)');
  if (r.status === 502) return note('502 (child could not start or died)');
  if (r.status === 401) {
    onUnauthorized?.();
    return note('401 (token revoked or store lost it)');
  }
  return bad(`${what}: HTTP ${r.status} ${(r.text || '').slice(0, 200)}`);
}

const ROUTE = '/mcp/whoami';
let onUnauthorized = null; // set by main: sign in again, as a real client would
let relogin = null; // the sign-in in progress

async function streamableClient(gw, token) {
  const headers = { authorization: `Bearer ${token()}` };
  const opts = { headers, timeoutMs: 15000, readMs: 15000 };
  const init = await mcpPost(gw.port, ROUTE, initializeMessage(1), opts);
  judge(init, 'initialize');
  const sid = init.headers?.['mcp-session-id'];
  if (!sid) return;
  const o = { ...opts, session: sid, protocolVersion: '2025-11-25' };
  judge(await mcpPost(gw.port, ROUTE, { jsonrpc: '2.0', method: 'notifications/initialized' }, o), 'initialized');
  judge(await mcpPost(gw.port, ROUTE, toolCall(2, 'whoami'), o), 'whoami');
  judge(await mcpPost(gw.port, ROUTE, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, o), 'tools/list');
  const big = await mcpPost(gw.port, ROUTE, toolCall(4, 'big_line', { bytes: 1 << 20 }), o);
  judge(big, '1 MiB result');
  // A GET stream held for a moment.
  const g = await mcpRequest({ port: gw.port, path: ROUTE, method: 'GET', session: sid, protocolVersion: '2025-11-25', headers }).catch(() => null);
  if (g) {
    await sleep(200 + Math.random() * 800);
    g.close();
  }
  if (Math.random() < 0.3) return; // abandoned: never DELETEd (idle_timeout reaps it)
  const d = await mcpRequest({ port: gw.port, path: ROUTE, method: 'DELETE', session: sid, protocolVersion: '2025-11-25', headers, accept: null });
  await d.body().catch(() => {});
}

async function legacyClient(gw, token, { stopReading = false } = {}) {
  const headers = { authorization: `Bearer ${token()}` };
  const s = await mcpRequest({ port: gw.port, path: `${ROUTE}/sse`, method: 'GET', headers, timeoutMs: 15000 }).catch(() => null);
  if (!s) return bad('legacy: /sse failed to connect');
  if (s.status !== 200) return judge({ status: s.status }, 'legacy /sse');
  try {
    const ep = await s.sse.next(10000);
    if (!ep || ep.event !== 'endpoint') return bad('legacy: no endpoint event');
    // An answer comes on the stream only for a POST that was accepted (202).
    const send = async (m, what) => {
      const r = await mcpPost(gw.port, ep.data, m, { headers, timeoutMs: 15000 });
      judge(r, what);
      return r.status === 202;
    };
    const awaitId = async (id) => {
      for (;;) {
        const ev = await s.sse.next(10000).catch((e) => {
          bad(`legacy: no answer for id ${id} on an open stream: ${e.message.slice(0, 300)}`);
          return null;
        });
        if (!ev) return null; // the stream ended (its child was killed): documented
        const m = ev.data && ev.event === 'message' ? JSON.parse(ev.data) : null;
        if (m?.id === id) return m;
      }
    };
    if (!(await send(initializeMessage(1, { protocolVersion: '2024-11-05' }), 'legacy initialize'))) return;
    if (!(await awaitId(1))) return;
    if (stopReading) {
      s.res.pause(); // a client that stops reading, then goes away
      for (let i = 0; i < 4; i++) await send(toolCall(10 + i, 'big_line', { bytes: 1 << 20 }), 'legacy big').catch(() => {});
      await sleep(2000);
      return;
    }
    if (!(await send({ jsonrpc: '2.0', method: 'notifications/initialized' }, 'legacy initialized'))) return;
    if (!(await send(toolCall(2, 'whoami'), 'legacy whoami'))) return;
    const m = await awaitId(2);
    if (m && m.error && !(m.error.code === -32000 && /upstream process/.test(m.error.message))) bad(`legacy whoami: ${JSON.stringify(m.error)}`);
  } finally {
    s.close();
  }
}

/** A connection that drips its head a byte at a time: the gateway must end it (408). */
function slowDrip(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const head = 'GET /healthz HTTP/1.1\r\nHost: soak\r\nX-Slow: ' + 'a'.repeat(1000);
    let i = 0;
    const t = setInterval(() => {
      if (i < head.length && !s.destroyed) s.write(head[i++]);
    }, 300);
    const end = () => {
      clearInterval(t);
      stats.hostile++;
      resolve();
    };
    s.on('close', end);
    s.on('error', () => {});
    setTimeout(() => s.destroy(), 20000);
  });
}

async function loop(fn) {
  while (live()) {
    try {
      await fn();
      if (relogin) await relogin; // a real client waits for its new sign-in
    } catch (e) {
      bad(`exception: ${e.message}`);
    }
  }
}

async function main() {
  const redis = await startRedis();
  const port = await freePort();
  const idp = await startIdp({ gatewayUrl: `http://127.0.0.1:${port}` });
  const routes = [{ name: 'whoami', path: ROUTE, stdio: { command: [WHOAMI_BIN], idle_timeout: '5s' } }];
  const gw = await startGateway({
    port,
    config: oauthGatewayConfig({
      port, redisUrl: redis.url, issuer: idp.issuer, routes,
      server: { limits: { header_timeout: '3s', max_sessions_per_user: 200, max_sessions: 2000 } },
      oauth: { access_token_ttl: '10m' },
    }),
  });
  await waitFor(async () => (await fetch(`${gw.url}/readyz`)).status === 200, { timeoutMs: 15000, what: 'ready' });
  const stack = { url: gw.url };
  const users = [];
  for (const user of ['alice', 'bob']) {
    const t = await obtainTokens(stack, { user });
    users.push({ user, client: t.client, tokens: t.tokens });
  }
  const token = () => users[Math.floor(Math.random() * users.length)].tokens.access_token;
  // A 401 (Redis lost the tokens when it restarted) makes the clients sign in again, once.
  const signInAgain = async () => {
    await waitFor(async () => (await fetch(`${gw.url}/readyz`)).status === 200, { timeoutMs: 20000, intervalMs: 200, what: 'ready again' }).catch(() => {});
    for (const u of users) {
      for (let i = 0; i < 20; i++) {
        const t = await obtainTokens(stack, { user: u.user }).catch(() => null);
        if (t) {
          u.client = t.client;
          u.tokens = t.tokens;
          note('signed in again');
          break;
        }
        await sleep(250);
      }
    }
  };
  onUnauthorized = () => {
    if (!relogin) relogin = signInAgain().finally(() => { relogin = null; });
  };
  await sleep(500);
  const start = await sample(gw);
  console.log(`soak: ${SECONDS} s; start ${JSON.stringify(start)}`);

  const faults = (async () => {
    // Redis restarted twice, at a third and two thirds of the run.
    for (const at of [1 / 3, 2 / 3]) {
      while (live() && Date.now() < deadline - SECONDS * 1000 * (1 - at)) await sleep(200);
      if (!live()) return;
      console.log('soak: restarting redis');
      await redis.restart(); // it loses everything: the next 401 makes the clients sign in again
    }
  })();
  const killer = (async () => {
    while (live()) {
      await sleep(3000 + Math.random() * 4000);
      const kids = childPids(gw.pid);
      if (kids.length) {
        try {
          process.kill(kids[Math.floor(Math.random() * kids.length)], 'SIGKILL');
          note('SIGKILLed a child');
        } catch { /* gone already */ }
      }
    }
  })();
  const refresher = (async () => {
    while (live()) {
      await sleep(20000);
      for (const u of users) {
        const r = await refresh(gw.url, u.client, u.tokens.refresh_token).catch(() => null);
        if (r?.status === 200) u.tokens = r.json;
      }
    }
  })();
  const samples = [];
  const sampler = (async () => {
    while (live()) {
      await sleep(10000);
      samples.push(await sample(gw).catch(() => null));
    }
  })();
  const workers = [
    ...Array.from({ length: 4 }, () => loop(() => streamableClient(gw, token))),
    ...Array.from({ length: 2 }, () => loop(() => legacyClient(gw, token))),
    loop(() => legacyClient(gw, token, { stopReading: true })),
    ...Array.from({ length: 3 }, () => loop(() => slowDrip(gw.port))),
  ];
  await Promise.all([...workers, faults, killer, refresher, sampler]);

  // Settle: abandoned sessions expire (idle_timeout 5 s), streams close.
  let end;
  await waitFor(async () => {
    end = await sample(gw);
    return end.sessions === 0 && end.children === 0 && end.connections <= 1;
  }, { timeoutMs: 30000, intervalMs: 500, what: 'sessions and children to drain' }).catch(() => {});
  end = await sample(gw);
  const peak = samples.filter(Boolean).reduce((a, x) => (x.rss_mib > a ? x.rss_mib : a), start.rss_mib);
  console.log(`soak: end   ${JSON.stringify(end)}; peak RSS ${peak} MiB`);
  console.log(`soak: well-behaved answers ok ${stats.ok}; documented ${JSON.stringify(stats.documented)}; hostile connections ended ${stats.hostile}`);
  const fails = [];
  if (end.rss_mib > start.rss_mib + RSS_GROWTH_MIB) fails.push(`RSS grew ${start.rss_mib} → ${end.rss_mib} MiB (bound +${RSS_GROWTH_MIB})`);
  if (end.fds > start.fds + FD_GROWTH) fails.push(`descriptors grew ${start.fds} → ${end.fds} (bound +${FD_GROWTH})`);
  if (end.children > start.children) fails.push(`children ${start.children} → ${end.children}`);
  if (end.sessions > start.sessions) fails.push(`sessions ${start.sessions} → ${end.sessions}`);
  if (stats.undocumented.length) fails.push(`${stats.undocumented.length} undocumented answers, e.g. ${JSON.stringify(stats.undocumented.slice(0, 5))}`);
  if (stats.ok === 0) fails.push('no well-behaved request succeeded');
  const rc = await gw.stop();
  if (rc !== 0) fails.push(`the gateway exited ${rc}`);
  await teardownAll();
  if (fails.length) {
    console.log(`soak: FAIL\n  ${fails.join('\n  ')}`);
    process.exit(1);
  }
  console.log('soak: ok');
  process.exit(0);
}

main().catch(async (e) => {
  console.error(`soak: ${e.stack || e}`);
  await teardownAll().catch(() => {});
  process.exit(1);
});
