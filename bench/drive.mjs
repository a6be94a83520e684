// Drives the three scenarios of `make bench` against ONE gateway that bench/run.sh started,
// and writes the measurements as JSON. The gateway must serve Streamable HTTP at --url with a
// STDIO upstream (build/rel/examples/whoami-server).
//
//   node bench/drive.mjs --name mcpgate --url http://127.0.0.1:P/mcp --pid PID \
//       --upstream build/rel/examples/whoami-server --out result.json \
//       [--auth-file FILE] [--seconds 8] [--warmup 2] [--concurrency 1,16,64]
//       [--large-bytes 1048576] [--only setup|throughput|large]
//       [--wrk-url URL] [--cpu-pids PID,...] [--bigcall build/bench/bigcall]
//       [--echo-arg text --echo-prefix '']
//
// 1. session setup: initialize, notifications/initialized, DELETE, one after the other on one
//    keep-alive connection, for --warmup then --seconds seconds: sessions/s, p50, p99.
// 2. throughput: for each C in --concurrency, C sessions opened first, then wrk (bench/echo.lua)
//    with C threads of one connection each: tools/call echo, each answer checked.
// 3. memory and fds: first, before any other load, the gateway's RSS growth per idle session
//    (100 opened one after the other, then DELETEd); then RSS and open fds of the gateway
//    process, and the number of upstream processes below it, before any load, with every
//    throughput session open ("loaded"), and after those sessions were DELETEd and the upstream
//    processes had gone ("closed").
// 4. large payloads (--large-bytes, 0: skipped): on a new session, tools/call echo with a text of
//    that many bytes, then big_line with bytes=that many, one client, each answer checked whole;
//    first one request each, and a gateway that refuses it (413, an error) gets {refused: why}
//    instead of numbers. Gateway CPU and RSS before/after each. The client is bench/bigcall
//    (--bigcall, built by bench/run.sh), not wrk: wrk reads 8 KiB at a time and spent 2.6 ms
//    of its own CPU per 1 MiB answer, on the critical path of a single client (bigcall.c says
//    more); without --bigcall, wrk.
// --only setup: scenario 1 alone (the warm-pool row). --only throughput: scenario 2 alone.
// --only large: scenario 4 alone (for profiling the large-payload path by hand).
// --echo-arg, --echo-prefix: the name of echo's argument and what its answer puts before the
//    text (whoami-server: text and nothing; server-everything: message and "Echo: ").
// --wrk-url: where wrk sends the calls, when not --url (where the sessions are opened): the
//    cluster rows open sessions on one instance and call them through another. --cpu-pids:
//    more gateway processes whose CPU time counts as the gateway's (both instances).
//
// Every request has a deadline; every wrk run has --timeout and a duration; bench/run.sh wraps
// the whole driver in timeout(1) as well.

import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTOCOL = '2025-11-25';
const ECHO_TEXT = 'hello-mcp-bench';
const REQUEST_TIMEOUT_MS = 10000;
const CLK_TCK = 100; // Linux USER_HZ, for /proc/PID/stat times

function parseArgs(argv) {
  const o = { seconds: 8, warmup: 2, concurrency: '1,16,64', largeBytes: 1048576, only: '', echoArg: 'text', echoPrefix: '' };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (argv[i + 1] === undefined) throw new Error(`missing value for ${argv[i]}`);
    o[k] = argv[i + 1];
  }
  for (const k of ['name', 'url', 'pid', 'upstream', 'out']) {
    if (!o[k]) throw new Error(`--${k} is required`);
  }
  o.pid = Number(o.pid);
  o.seconds = Number(o.seconds);
  o.warmup = Number(o.warmup);
  o.largeBytes = Number(o.largeBytes);
  o.concurrency = String(o.concurrency).split(/[ ,]+/).filter(Boolean).map(Number);
  o.cpuPids = String(o.cpuPids ?? '').split(',').filter(Boolean).map(Number);
  o.wrkUrl = o.wrkUrl ?? o.url;
  o.auth = o.authFile ? `Bearer ${readFileSync(o.authFile, 'utf8').trim()}` : '';
  return o;
}

const opt = parseArgs(process.argv.slice(2));
const url = new URL(opt.url);
const UPSTREAM = realpathSync(opt.upstream);
const log = (msg) => process.stderr.write(`bench: ${opt.name}: ${msg}\n`);

// ---- /proc -------------------------------------------------------------------------------

function statFields(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' '); // [0] = state, [1] = ppid, ...
}

/** Every live process below PID (the whole tree, not only direct children). */
function descendants(pid) {
  const kids = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = statFields(d);
      if (f[0] === 'Z') continue;
      const ppid = Number(f[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch { /* gone meanwhile */ }
  }
  const out = [];
  const todo = [pid];
  while (todo.length) {
    for (const k of kids.get(todo.pop()) ?? []) {
      out.push(k);
      todo.push(k);
    }
  }
  return out;
}

function rssKiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

function cpuTicks(pid) {
  const f = statFields(pid);
  return Number(f[11]) + Number(f[12]); // utime + stime
}

/** Ticks of PID plus the children it has reaped (cutime, cstime). */
function treeTicks(pid) {
  const f = statFields(pid);
  return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
}

/**
 * A CPU sample, to tell afterwards how much of the machine went to processes outside this
 * benchmark (other users, other test suites): machine busy time minus the gateway, its
 * children alive or reaped, and this driver with the wrk runs it reaped.
 */
function cpuSample() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
  let ours = treeTicks(process.pid);
  for (const pid of [opt.pid, ...opt.cpuPids]) ours += treeTicks(pid);
  for (const p of [opt.pid, ...opt.cpuPids].flatMap(descendants)) {
    try {
      const g = statFields(p);
      ours += Number(g[11]) + Number(g[12]);
    } catch { /* gone meanwhile */ }
  }
  return { busy: user + nice + system + irq + softirq, total: user + nice + system + idle + iowait + irq + softirq + steal, ours, t: performance.now() };
}

/** CPU used by everything else between two samples, in % of one core. */
function otherPct(a, b) {
  const secs = (b.t - a.t) / 1000;
  return Math.max(0, ((b.busy - a.busy) - (b.ours - a.ours)) / CLK_TCK / secs) * 100;
}

function upstreams() {
  return descendants(opt.pid).filter((p) => {
    try {
      return readlinkSync(`/proc/${p}/exe`) === UPSTREAM;
    } catch {
      return false;
    }
  });
}

function snapshot(label, sessionsOpen) {
  const ups = upstreams();
  const s = {
    label,
    sessions_open: sessionsOpen,
    rss_kib: rssKiB(opt.pid),
    fds: readdirSync(`/proc/${opt.pid}/fd`).length,
    upstreams: ups.length,
    upstreams_rss_kib: ups.reduce((a, p) => {
      try {
        return a + rssKiB(p);
      } catch {
        return a;
      }
    }, 0),
  };
  log(`${label}: rss ${s.rss_kib} KiB, fds ${s.fds}, upstream processes ${s.upstreams}`);
  return s;
}

// ---- MCP over HTTP ---------------------------------------------------------------------

// One keep-alive connection, one request at a time, as one MCP client has. node:http rather than
// a package, so the driver runs on any Node.js that Debian or NodeSource ship.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function headers(sid) {
  const h = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': PROTOCOL,
  };
  if (sid) h['mcp-session-id'] = sid;
  if (opt.auth) h.authorization = opt.auth;
  return h;
}

function call(method, sid, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const h = headers(sid);
    if (data !== undefined) h['content-length'] = Buffer.byteLength(data);
    const req = http.request({
      host: url.hostname, port: url.port, path: url.pathname, method, headers: h, agent, timeout: REQUEST_TIMEOUT_MS,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} timed out after ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

let initId = 0;
/** initialize + notifications/initialized; returns the session id or throws. */
async function openSession() {
  initId += 1;
  const r = await call('POST', undefined, {
    jsonrpc: '2.0',
    id: `init-${initId}`,
    method: 'initialize',
    params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'mcpgate-bench', version: '1' } },
  });
  const sid = r.headers['mcp-session-id'];
  if (r.status !== 200 || !sid || !r.text.includes('"result"')) {
    throw new Error(`initialize: HTTP ${r.status} ${r.text.slice(0, 200)}`);
  }
  const n = await call('POST', sid, { jsonrpc: '2.0', method: 'notifications/initialized' });
  if (n.status !== 202 && n.status !== 200) throw new Error(`notifications/initialized: HTTP ${n.status} ${n.text.slice(0, 200)}`);
  return sid;
}

async function closeSession(sid) {
  const r = await call('DELETE', sid);
  if (r.status !== 200 && r.status !== 204) throw new Error(`DELETE: HTTP ${r.status} ${r.text.slice(0, 200)}`);
}

const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : 0);

// ---- scenario 1: session setup -------------------------------------------------------

async function sessionLoop(seconds) {
  const lat = [];
  let failures = 0;
  let firstError = '';
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  const c0 = cpuSample();
  while (performance.now() < end) {
    const t = performance.now();
    try {
      const sid = await openSession();
      await closeSession(sid);
      lat.push(performance.now() - t);
    } catch (e) {
      failures += 1;
      firstError ||= String(e.message ?? e);
      if (failures >= 20) break;
    }
  }
  const elapsed = (performance.now() - t0) / 1000;
  const other = otherPct(c0, cpuSample());
  lat.sort((a, b) => a - b);
  return {
    sessions: lat.length,
    failures,
    first_error: firstError,
    seconds: elapsed,
    per_s: lat.length / elapsed,
    p50_ms: pct(lat, 50),
    p99_ms: pct(lat, 99),
    other_cpu_pct: other,
  };
}

// ---- scenario 2: throughput with wrk ------------------------------------------------

function runWrk(sids, seconds, runTag, extraEnv = {}) {
  const c = sids.length;
  const args = ['-t', String(c), '-c', String(c), '-d', `${seconds}s`, '--timeout', '5s',
    '-s', path.join(HERE, 'echo.lua'), opt.wrkUrl];
  const env = {
    ...process.env,
    BENCH_SIDS: sids.join(','),
    BENCH_PATH: url.pathname,
    BENCH_AUTH: opt.auth,
    BENCH_RUN: runTag,
    BENCH_TEXT: ECHO_TEXT,
    BENCH_ECHO_ARG: opt.echoArg,
    BENCH_ECHO_PREFIX: opt.echoPrefix,
    ...extraEnv,
  };
  return new Promise((resolve, reject) => {
    execFile(opt.wrk ?? 'wrk', args, { env, timeout: (seconds + 20) * 1000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const m = /^BENCH_JSON (.*)$/m.exec(stdout);
      if (!m) {
        reject(new Error(`wrk failed: ${err?.message ?? ''} ${stderr.slice(0, 500)} ${stdout.slice(0, 500)}`));
        return;
      }
      resolve(JSON.parse(m[1]));
    });
  });
}

/**
 * bench/bigcall on SID: tools/call TOOL with BYTES, one client, for SECONDS (after WARMUP); the
 * same BENCH_JSON as echo.lua's, and client_cpu_s.
 */
function runBigcall(sid, tool, bytes, seconds, warmup, runTag) {
  const args = ['--url', opt.wrkUrl, '--session', sid, '--tool', tool, '--bytes', String(bytes),
    '--seconds', String(seconds), '--warmup', String(warmup), '--run', runTag];
  if (opt.auth) args.push('--auth', opt.auth);
  return new Promise((resolve, reject) => {
    execFile(opt.bigcall, args, { timeout: (seconds + warmup + 30) * 1000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const m = /^BENCH_JSON (.*)$/m.exec(stdout);
      if (!m) {
        reject(new Error(`bigcall failed: ${err?.message ?? ''} ${stderr.slice(0, 500)} ${stdout.slice(0, 500)}`));
        return;
      }
      resolve(JSON.parse(m[1]));
    });
  });
}

/**
 * One measured run (RUN: a function that starts it and resolves to its BENCH_JSON): its counts
 * and latencies, and the gateway's CPU meanwhile.
 */
async function measured(run) {
  const gatewayTicks = () => [opt.pid, ...opt.cpuPids].reduce((n, pid) => n + cpuTicks(pid), 0);
  const upstreamTicks = (pids) => pids.reduce((n, pid) => {
    try {
      return n + cpuTicks(pid);
    } catch {
      return n; // gone meanwhile
    }
  }, 0);
  const ups = upstreams(); // the sessions are open: their children live through the run
  const cpu0 = gatewayTicks();
  const up0 = upstreamTicks(ups);
  const c0 = cpuSample();
  const r = await run();
  const cpu1 = gatewayTicks();
  const up1 = upstreamTicks(ups);
  const other = otherPct(c0, cpuSample());
  const secs = r.duration_us / 1e6;
  const ok = r.requests - r.bad;
  return {
    requests: r.requests,
    ok,
    bad: r.bad,
    errors: r.connect_err + r.read_err + r.write_err + r.timeouts,
    example_bad: r.example_bad,
    seconds: secs,
    per_s: ok / secs,
    p50_ms: r.p50_us / 1000,
    p90_ms: r.p90_us / 1000,
    p99_ms: r.p99_us / 1000,
    max_ms: r.max_us / 1000,
    gateway_cpu_pct: (((cpu1 - cpu0) / CLK_TCK) / secs) * 100,
    gateway_cpu_s: (cpu1 - cpu0) / CLK_TCK,
    upstream_cpu_pct: (((up1 - up0) / CLK_TCK) / secs) * 100,
    tx_bytes: r.tx_bytes,
    rx_bytes: r.rx_bytes,
    other_cpu_pct: other,
    ...(r.client_cpu_s !== undefined ? { client_cpu_s: r.client_cpu_s } : {}),
  };
}

/** One measured wrk run on SIDS. */
const measuredWrk = (sids, tag, env) => measured(() => runWrk(sids, opt.seconds, tag, env));

async function throughput(c, openSids) {
  const sids = [];
  for (let i = 0; i < c; i += 1) sids.push(await openSession());
  openSids.push(...sids);
  if (opt.warmup > 0) await runWrk(sids, opt.warmup, `w${c}`);
  const out = { concurrency: c, ...await measuredWrk(sids, `m${c}`) };
  log(`C=${c}: ${out.per_s.toFixed(0)} req/s, p50 ${out.p50_ms.toFixed(2)} ms, p99 ${out.p99_ms.toFixed(2)} ms, `
    + `bad ${out.bad}, socket errors ${out.errors}, gateway CPU ${out.gateway_cpu_pct.toFixed(0)}%, `
    + `other processes ${out.other_cpu_pct.toFixed(0)}%`);
  return out;
}

// ---- scenario 4: large payloads ----------------------------------------------------

/** A short, readable reason from an answer body (an HTML error page becomes its text). */
const brief = (text) => text.replace(/<(head|style|script)[^]*?<\/\1>/gi, ' ').replace(/<[^>]*>/g, ' ')
  .replace(/\s+/g, ' ').split(/&nbsp;| at /)[0].trim().slice(0, 100); // no stack trace

function largeCall(sid, tool, bytes, id) {
  const text = 'x'.repeat(bytes);
  const args = tool === 'big_line' ? { bytes } : { text };
  return call('POST', sid, { jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: args } })
    .then((r) => {
      if (r.status !== 200) return `HTTP ${r.status} ${brief(r.text)}`;
      if (!r.text.includes('"result"') || !r.text.includes(`"text":"${text}"`)) {
        return `HTTP 200 but not the expected result: ${brief(r.text)}`;
      }
      return '';
    }, (e) => String(e.message ?? e));
}

async function large(tool, bytes) {
  const rssBefore = rssKiB(opt.pid);
  const sid = await openSession();
  try {
    const why = await largeCall(sid, tool, bytes, `probe-${tool}`);
    if (why) {
      log(`${tool} ${bytes} bytes: refused: ${why}`);
      return { scenario: tool, bytes, refused: why, rss_before_kib: rssBefore, rss_after_kib: rssKiB(opt.pid) };
    }
    let m;
    if (opt.bigcall) {
      // The warm-up is a run of its own, as with wrk: the measured run's gateway CPU is its own.
      if (opt.warmup > 0) await runBigcall(sid, tool, bytes, opt.warmup, 0, `lw-${tool}`);
      m = await measured(() => runBigcall(sid, tool, bytes, opt.seconds, 0, `lm-${tool}`));
    } else {
      const env = { BENCH_TOOL: tool, BENCH_BYTES: String(bytes) };
      if (opt.warmup > 0) await runWrk([sid], opt.warmup, `lw-${tool}`, env);
      m = await measuredWrk([sid], `lm-${tool}`, env);
    }
    const out = {
      scenario: tool,
      bytes,
      ...m,
      rss_before_kib: rssBefore,
      rss_after_kib: rssKiB(opt.pid),
    };
    log(`${tool} ${bytes} bytes: ${out.per_s.toFixed(1)} req/s, p50 ${out.p50_ms.toFixed(1)} ms, bad ${out.bad}, `
      + `socket errors ${out.errors}, gateway CPU ${out.gateway_cpu_pct.toFixed(0)}%, RSS ${rssBefore} -> ${out.rss_after_kib} KiB`);
    return out;
  } finally {
    await closeSession(sid).catch(() => {});
  }
}

// ---- scenario 3, first part: what one idle session costs --------------------------------

const PER_SESSION_WARM = 10;
const PER_SESSION_N = 100;

/**
 * Before any other load: PER_SESSION_WARM sessions opened and closed (the gateway's first-use
 * allocations), then PER_SESSION_N sessions opened one after the other on the one keep-alive
 * connection and left idle: the gateway's RSS growth per session (its children are separate
 * processes and counted apart), then all DELETEd.
 */
async function perSession(baselineUpstreams) {
  log(`per-session memory: ${PER_SESSION_N} idle sessions`);
  const sids = [];
  let before;
  let open;
  try {
    for (let i = 0; i < PER_SESSION_WARM; i++) sids.push(await openSession());
    while (sids.length) await closeSession(sids.pop());
    await settle(baselineUpstreams, 5000);
    before = rssKiB(opt.pid);
    for (let i = 0; i < PER_SESSION_N; i++) sids.push(await openSession());
    open = snapshot('per-session', sids.length);
    const spawned = open.upstreams - baselineUpstreams;
    if (spawned > 0 && spawned < sids.length) { // a child per session, but some sessions went
      throw new Error(`only ${spawned} of ${sids.length} sessions kept their child (a session limit evicted the rest?)`);
    }
  } catch (e) {
    // A gateway that refuses this many sessions gets no figure here; the other scenarios still run.
    log(`per-session memory: not measured: ${e.message ?? e}`);
    return { error: String(e.message ?? e) };
  } finally {
    for (const sid of sids) await closeSession(sid).catch(() => {});
    await settle(baselineUpstreams, 10000);
  }
  const out = {
    sessions: sids.length,
    rss_before_kib: before,
    rss_open_kib: open.rss_kib,
    kib_per_session: (open.rss_kib - before) / sids.length,
    upstreams: open.upstreams - baselineUpstreams,
    upstream_kib_per_session: open.upstreams_rss_kib / sids.length,
  };
  log(`per-session memory: ${out.kib_per_session.toFixed(1)} KiB per session in the gateway, `
    + `upstream processes ${out.upstreams}`);
  return out;
}

// ---- main ----------------------------------------------------------------------------

async function settle(baseline, ms) {
  const end = performance.now() + ms;
  while (upstreams().length > baseline && performance.now() < end) await new Promise((r) => setTimeout(r, 100));
}

const result = { name: opt.name, url: opt.url, wrk_url: opt.wrkUrl, auth: Boolean(opt.auth), seconds: opt.seconds, warmup: opt.warmup, only: opt.only };
try {
  const before = snapshot('before', 0);
  const baselineUpstreams = before.upstreams; // mcp-proxy keeps one shared child from the start

  if (opt.only === 'throughput') {
    const sids = [];
    result.throughput = [];
    for (const c of opt.concurrency) result.throughput.push(await throughput(c, sids));
    for (const sid of sids) await closeSession(sid).catch(() => {});
    throw Object.assign(new Error('done'), { done: true });
  }
  if (opt.only === 'large') {
    result.large = [];
    for (const tool of ['echo', 'big_line']) result.large.push(await large(tool, opt.largeBytes));
    throw Object.assign(new Error('done'), { done: true });
  }
  if (!opt.only) result.per_session = await perSession(baselineUpstreams);
  log(`session setup (${opt.warmup} s warm-up, ${opt.seconds} s)`);
  if (opt.warmup > 0) await sessionLoop(opt.warmup);
  result.setup = await sessionLoop(opt.seconds);
  log(`session setup: ${result.setup.per_s.toFixed(1)} sessions/s, p50 ${result.setup.p50_ms.toFixed(2)} ms, `
    + `p99 ${result.setup.p99_ms.toFixed(2)} ms, failures ${result.setup.failures}, `
    + `other processes ${result.setup.other_cpu_pct.toFixed(0)}%`);
  if (result.setup.sessions === 0) throw new Error(`no session could be set up: ${result.setup.first_error}`);
  await settle(baselineUpstreams, 5000);
  if (opt.only === 'setup') throw Object.assign(new Error('done'), { done: true });

  const openSids = [];
  result.throughput = [];
  for (const c of opt.concurrency) result.throughput.push(await throughput(c, openSids));

  const loaded = snapshot('loaded', openSids.length);
  let closeFailures = 0;
  for (const sid of openSids) await closeSession(sid).catch(() => { closeFailures += 1; });
  const t = performance.now();
  await settle(baselineUpstreams, 10000);
  const settleMs = performance.now() - t;
  // Our own keep-alive connection goes too (wrk's went when it exited), so "closed" counts
  // the same descriptors as "before", which was taken before the first connection.
  agent.destroy();
  await new Promise((r) => setTimeout(r, 500)); // let the gateway finish its own clean-up
  const closed = snapshot('closed', 0);
  result.memory = { before, loaded, closed, close_failures: closeFailures, settle_ms: settleMs };

  if (opt.largeBytes > 0) {
    result.large = [];
    for (const tool of ['echo', 'big_line']) result.large.push(await large(tool, opt.largeBytes));
    agent.destroy();
  }
} catch (e) {
  if (!e.done) {
    result.error = String(e.message ?? e);
    log(`FAILED: ${result.error}`);
  }
} finally {
  agent.destroy();
}
writeFileSync(opt.out, `${JSON.stringify(result, null, 2)}\n`);
process.exitCode = result.error ? 1 : 0;
