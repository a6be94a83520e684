// Prints the tables of `make bench` from the JSON files bench/drive.mjs wrote, one row per
// gateway, with the ratio mcpgate/row, and writes the same text to --out and, as Markdown
// (headings, the same tables), to --md.
//
//   node bench/report.mjs --dir DIR --out bench/results/latest.txt --md bench/results/latest.md NAME...
//
// DIR/NAME.json is a driver result (bench/drive.mjs, or bench/direct for the row "direct");
// DIR/NAME.error (plain text) says why a gateway has none. Environment from bench/run.sh:
// BENCH_LOAD_START (/proc/loadavg at start), BENCH_T0 (start, epoch seconds), MCPGATE_BIN,
// BENCH_SECONDS, BENCH_WARMUP, BENCH_WARM.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
let dir;
let out;
let md;
const names = [];
for (let i = 0; i < argv.length; i += 1) {
  if (argv[i] === '--dir') dir = argv[++i];
  else if (argv[i] === '--out') out = argv[++i];
  else if (argv[i] === '--md') md = argv[++i];
  else names.push(argv[i]);
}

const pkgVersion = (name) => {
  try {
    return JSON.parse(readFileSync(path.join(HERE, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
};
const cmdOut = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    return (e.stdout || e.stderr || '').toString().trim().split('\n')[0] || '?';
  }
};

const LABELS = {
  mcpgate: 'mcpgate (auth: none, memory store)',
  supergateway: `supergateway ${pkgVersion('supergateway')} (--stateful)`,
  'mcp-proxy': `mcp-proxy ${pkgVersion('mcp-proxy')}`,
  'mcpgate-oauth': 'mcpgate (OAuth bearer, Redis store)',
  'mcpgate-warm': `mcpgate (stdio.warm: ${process.env.BENCH_WARM ?? '?'}, identity in _meta only)`,
  direct: 'child direct (bench/direct: no gateway, the ceiling)',
  'cluster-owner': 'two instances, calls sent to the session\'s owner',
  'cluster-other': 'two instances, calls sent to the other (forwarded)',
};
const REF = 'mcpgate';

const results = names.map((name) => {
  const file = path.join(dir, `${name}.json`);
  const err = path.join(dir, `${name}.error`);
  if (existsSync(err)) return { name, error: readFileSync(err, 'utf8').trim() };
  if (!existsSync(file)) return { name, error: 'not run' };
  return JSON.parse(readFileSync(file, 'utf8'));
});
const ref = results.find((r) => r.name === REF);
const direct = results.find((r) => r.name === 'direct' && !r.error);
/** Rows that ran every scenario (the warm-pool row runs session setup only, the cluster rows throughput only). */
const full = results.filter((r) => !r.only);

// ---- formatting ----------------------------------------------------------------------

const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const int = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const mib = (kib) => (Number.isFinite(kib) ? (kib / 1024).toFixed(1) : 'n/a');

/** The ratio mcpgate/row of one metric; the reference row itself shows "ref". */
function ratio(row, get) {
  if (row.name === REF) return 'ref';
  if (!ref || ref.error) return 'n/a';
  const a = get(ref);
  const b = get(row);
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return 'n/a';
  return `${(a / b).toFixed(2)}x`;
}

function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r.length === 1 ? 0 : String(r[i]).length))));
  const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join(' | ')} |`;
  const total = widths.reduce((a, w) => a + w + 3, 1);
  const outRows = rows.map((r) => (r.length === 1 ? `| ${String(r[0]).padEnd(total - 4)} |` : line(r)));
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...outRows].join('\n');
}

/** A row for a gateway that has no numbers for this scenario: its reason, across the table. */
const failedRow = (r, why) => [`${LABELS[r.name] ?? r.name}: ${why}`];

// Each piece is kept with its kind, so that the same report prints as text and as Markdown.
const parts = [];
const say = (s = '') => parts.push({ kind: 'line', s });
const title = (s) => parts.push({ kind: 'title', s });
const tbl = (s) => parts.push({ kind: 'table', s });

// ---- header ----------------------------------------------------------------------------

const cpus = os.cpus();
const elapsed = process.env.BENCH_T0 ? Math.round(Date.now() / 1000 - Number(process.env.BENCH_T0)) : undefined;
say(`mcpgate bench, ${new Date().toISOString()}`);
say(`machine: ${cmdOut('nproc', [])} CPUs (nproc), ${cpus[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 20)} MiB RAM, Linux ${os.release()}`);
say(`load average: at start ${(process.env.BENCH_LOAD_START ?? '?').split(' ').slice(0, 3).join(' ')}, at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
say(`versions: ${cmdOut(process.env.MCPGATE_BIN || 'mcpgate', ['--version'])}; supergateway ${pkgVersion('supergateway')}; `
  + `mcp-proxy ${pkgVersion('mcp-proxy')}; node ${process.version}; `
  + `${cmdOut('wrk', ['-v']).split(' ').slice(0, 2).join(' ')}; redis ${(/v=(\S+)/.exec(cmdOut('redis-server', ['--version'])) ?? [])[1] ?? 'n/a'}`);
say(`upstream: build/rel/examples/whoami-server (STDIO) behind every gateway; all traffic on 127.0.0.1`);
say(`each measurement: ${process.env.BENCH_WARMUP ?? '?'} s warm-up, then ${process.env.BENCH_SECONDS ?? '?'} s; `
  + `protocol 2025-11-25; per-request logging off everywhere`);
say('ratio columns: mcpgate (auth: none) / that row. req/s and sessions/s: above 1 = mcpgate does more;');
say('latency, CPU per request, memory: below 1 = mcpgate needs less.');
if (direct) {
  say('child direct is the ceiling: there req/s 0.40x = mcpgate delivers 40% of what the bare child answers over');
  say('its pipes, latency 2.00x = mcpgate takes twice as long; 1.00x would be a gateway that costs nothing.');
}
const loadStart = Number((process.env.BENCH_LOAD_START ?? '0').split(' ')[0]);
if (loadStart > 0.5 || os.loadavg()[0] > cpus.length) {
  say(`WARNING: the machine was not idle (load ${loadStart.toFixed(2)} at start): other processes shared `
    + `the CPUs; the numbers are noisy, compare ratios, and re-run on a quiet machine.`);
}
for (const r of results) if (r.error) say(`${LABELS[r.name] ?? r.name}: ${r.error}`);
say();

// ---- scenario 1 --------------------------------------------------------------------------

title('Scenario 1: session setup: initialize + notifications/initialized + DELETE, one after the other');
tbl(table(
  ['gateway', 'sessions/s', 'ms/session', 'p50 ms', 'p99 ms', 'sessions', 'failed', 'other CPU', 'ratio sessions/s',
    'ratio p50', 'ratio p99', 'ms/session / direct spawn→init'],
  results.filter((r) => r.only !== 'throughput' && !r.name.startsWith('cluster-')).map((r) => {
    if (r.error && !r.setup) return failedRow(r, r.error);
    const s = r.setup;
    const msPer = 1000 / s.per_s;
    return [LABELS[r.name] ?? r.name, f(s.per_s, 1), f(msPer), f(s.p50_ms), f(s.p99_ms), int(s.sessions), int(s.failures),
      `${f(s.other_cpu_pct, 0)}%`, ratio(r, (x) => x.setup?.per_s), ratio(r, (x) => x.setup?.p50_ms), ratio(r, (x) => x.setup?.p99_ms),
      direct ? `${f(msPer / direct.setup.init_p50_ms)}x` : 'n/a'];
  }),
));
if (direct) {
  say(`  child direct: spawn → initialize answer p50 ${f(direct.setup.init_p50_ms, 3)} ms, p99 ${f(direct.setup.init_p99_ms, 3)} ms;`);
  say('  its row is the whole cycle: spawn, initialize, notifications/initialized, close stdin, wait for the exit.');
  say('  ms/session = 1000 / sessions/s. The last column divides it by the direct spawn → initialize p50: how many');
  say('  times the bare start of one child a whole session costs (a warm pool starts children off the critical path).');
}
if (results.some((r) => r.name === 'mcpgate-warm' && r.setup)) {
  say('  mcpgate (stdio.warm): the same route with a pool of pre-initialized children; a sequential client takes one');
  say('  per session and the pool refills behind it; a session that finds the pool empty starts a child cold.');
}
if (results.some((r) => r.name === 'mcp-proxy' && r.setup)) {
  say('  mcp-proxy starts no process per session: every session shares the one upstream child it started');
  say('  at launch, so its sessions/s is not a spawn-per-session number (mcpgate and supergateway spawn one each).');
}
for (const r of results) if (r.setup?.first_error) say(`  ${r.name}: first failure: ${r.setup.first_error}`);
say();

// ---- scenario 2 --------------------------------------------------------------------------

const cpuPerReq = (t) => (t && t.ok > 0 && Number.isFinite(t.gateway_cpu_pct) ? (t.gateway_cpu_pct / 100) * t.seconds * 1e6 / t.ok : undefined);
const concurrencies = [...new Set(results.flatMap((r) => (r.throughput ?? []).map((t) => t.concurrency)))];
for (const c of concurrencies) {
  title(`Scenario 2: tools/call echo, ${c} concurrent client${c > 1 ? 's' : ''}, one session and one keep-alive connection each (wrk)`);
  const get = (r) => (r.throughput ?? []).find((t) => t.concurrency === c);
  tbl(table(
    ['gateway', 'req/s', 'p50 ms', 'p99 ms', 'gw CPU', 'CPU us/req', 'bad/err', 'other CPU', 'ratio req/s', 'ratio p50',
      'ratio p99', 'ratio CPU/req'],
    full.map((r) => {
      const t = get(r);
      if (!t) return failedRow(r, r.error ?? 'not measured');
      return [LABELS[r.name] ?? r.name, int(t.per_s), f(t.p50_ms, 3), f(t.p99_ms, 3), t.gateway_cpu_pct === null ? 'none' : `${f(t.gateway_cpu_pct, 0)}%`,
        f(cpuPerReq(t), 0), `${t.bad}/${t.errors}`, `${f(t.other_cpu_pct, 0)}%`, ratio(r, (x) => get(x)?.per_s), ratio(r, (x) => get(x)?.p50_ms),
        ratio(r, (x) => get(x)?.p99_ms), ratio(r, (x) => cpuPerReq(get(x)))];
    }),
  ));
  for (const r of results) {
    const t = get(r);
    if (t?.example_bad) say(`  ${r.name}: first bad answer: ${t.example_bad}`);
  }
  const d = direct && get(direct);
  if (d) {
    say(`  child direct: ${c} child${c > 1 ? 'ren' : ''}, one per client, over pipes; its driver used ${f(d.driver_cpu_pct, 0)}% of a core`);
    say(`  (${d.driver_cpu_pct < 90 ? 'less than one core: it is not the bottleneck' : 'WARNING: about one core, the driver may be the bottleneck'}), `
      + `the children ${f(d.children_cpu_pct, 0)}%. Its ratio req/s is mcpgate / the ceiling.`);
  }
  if (c === 1) {
    say('  One client on a 2-vCPU VM is bimodal (p50 ~55 us or ~150 us for mcpgate, flipping from one moment to');
    say('  the next with the same work per request): between two mcpgate rows, 0.5-2x is noise (bench/README.md).');
  }
  if (c > 1 && results.some((r) => r.name === 'mcp-proxy' && get(r))) {
    say(`  mcp-proxy forwards all ${c} sessions to its one shared upstream child; the others run ${c} children.`);
  }
  say();
}
say('  gw CPU: CPU time of the gateway process alone (not its upstream children, not wrk) / wall time, 100% = one');
say('  core; CPU us/req: that CPU time per answered request. On a 2-core box shared by the gateway, its children and');
say('  wrk, req/s is bounded by the machine; CPU per request is what the gateway itself costs.');
say('  other CPU (also in scenario 1): CPU that processes outside the benchmark used during that measurement, in %');
say('  of one core (machine busy time minus the gateway, its children, the driver and wrk). Above ~10% the row');
say('  was disturbed: its req/s and latencies are low by an unknown amount, its CPU per request much less so.');
say();

// ---- scenario 2b: the same calls with a Node upstream (server-everything) --------------------

const EVERYTHING_ROWS = ['mcpgate', 'mcpgate-nice', 'supergateway', 'mcp-proxy', 'direct'];
const everything = EVERYTHING_ROWS.map((n) => {
  const file = path.join(dir, `everything-${n}.json`);
  const err = path.join(dir, `everything-${n}.error`);
  if (existsSync(err)) return { name: n, error: readFileSync(err, 'utf8').trim() };
  return existsSync(file) ? { ...JSON.parse(readFileSync(file, 'utf8')), name: n } : null;
}).filter(Boolean);
if (everything.length) {
  const evC = everything.find((r) => r.throughput?.length)?.throughput[0].concurrency;
  title(`Scenario 2b: tools/call echo, ${evC ?? '?'} clients, upstream @modelcontextprotocol/server-everything `
    + `${pkgVersion('@modelcontextprotocol/server-everything')} (Node.js) instead of whoami-server`);
  const evGet = (r) => r.throughput?.[0];
  const evRef = everything.find((r) => r.name === 'mcpgate' && evGet(r));
  const evRatio = (r, get) => {
    if (r.name === 'mcpgate') return 'ref';
    const a = evRef && get(evGet(evRef));
    const b = evGet(r) && get(evGet(r));
    return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a';
  };
  tbl(table(['gateway', 'req/s', 'p50 ms', 'p99 ms', 'CPU us/req', 'upstream CPU', 'bad/err', 'other CPU', 'ratio req/s', 'ratio p99'],
    everything.map((r) => {
      const t = evGet(r);
      const label = { direct: LABELS.direct, mcpgate: 'mcpgate (auth: none, memory store)',
        'mcpgate-nice': 'mcpgate (the same, stdio.nice: 5)' }[r.name] ?? LABELS[r.name];
      if (!t) return [`${label}: ${r.error ?? 'not measured'}`];
      const up = r.name === 'direct' ? t.children_cpu_pct : t.upstream_cpu_pct;
      return [label, int(t.per_s), f(t.p50_ms, 3), f(t.p99_ms, 3), r.name === 'direct' ? 'none' : f(cpuPerReq(t), 0),
        Number.isFinite(up) ? `${f(up, 0)}%` : 'n/a', `${t.bad}/${t.errors}`, `${f(t.other_cpu_pct, 0)}%`,
        evRatio(r, (x) => x.per_s), evRatio(r, (x) => x.p99_ms)];
    })));
  for (const r of everything) if (evGet(r)?.example_bad) say(`  ${r.name}: first bad answer: ${evGet(r).example_bad}`);
  say('  The upstream of the issue that asked for these figures: a Node.js MCP server, one process per session');
  say('  (mcp-proxy: one for all). Here the upstream, not the front, takes most of the two cores (upstream CPU, 100% =');
  say('  one core), so the ratio to child direct shows what the front leaves of them, and no front can be more than');
  say('  child direct / that peer times faster than a peer. Scenario 2 (whoami-server, a C upstream) shows the');
  say('  fronts\' own cost.');
  const evWarm = [...new Set(everything.map((r) => r.warmup).filter((w) => w !== undefined))];
  say(`  Warm-up ${evWarm.join('/') || '?'} s per row (BENCH_EVERYTHING_WARMUP): V8 compiles the server's hot paths only after`);
  say('  thousands of calls per process; with 2 s every row measured children at about half their settled rate.');
  say();
}

// ---- scenario 3 --------------------------------------------------------------------------

title('Scenario 3: memory and descriptors of the gateway process: what an idle session costs; before any load, loaded (the throughput sessions still open), closed (those sessions DELETEd, upstream processes gone)');
const m = (r, k) => r.memory?.[k];
tbl(table(
  ['gateway', 'KiB per idle session', 'RSS MiB before/loaded/closed', 'fds before/loaded/closed', 'upstream procs', 'upstream RSS MiB loaded',
    'ratio KiB/session', 'ratio RSS closed', 'ratio RSS+upstreams loaded'],
  full.filter((r) => r.name !== 'direct').map((r) => {
    if (!r.memory) return failedRow(r, r.error ?? 'not measured');
    const [b, l, c] = ['before', 'loaded', 'closed'].map((k) => m(r, k));
    const ps = r.per_session;
    return [LABELS[r.name] ?? r.name, Number.isFinite(ps?.kib_per_session) ? ps.kib_per_session.toFixed(1) : 'n/a',
      `${mib(b.rss_kib)} / ${mib(l.rss_kib)} / ${mib(c.rss_kib)}`,
      `${b.fds} / ${l.fds} / ${c.fds}`, `${b.upstreams} / ${l.upstreams} / ${c.upstreams}`, mib(l.upstreams_rss_kib),
      ratio(r, (x) => x.per_session?.kib_per_session),
      ratio(r, (x) => m(x, 'closed')?.rss_kib),
      ratio(r, (x) => (m(x, 'loaded') ? m(x, 'loaded').rss_kib + m(x, 'loaded').upstreams_rss_kib : undefined))];
  }),
));
const withMem = results.find((r) => r.memory);
const withPs = results.find((r) => r.per_session);
if (withPs) {
  say(`  KiB per idle session: before any other load, ${withPs.per_session.sessions} sessions opened one after the`);
  say('  other on one keep-alive connection and left idle; the growth of the gateway process\'s RSS divided by');
  say('  them (upstream processes are separate and not in it; mcp-proxy shares one child among all sessions).');
}
if (withMem) {
  say(`  loaded = ${withMem.memory.loaded.sessions_open} sessions open. Every gateway had by then set up and closed`);
  say('  all the sessions of scenario 1 and served every request of scenario 2: fds and upstream processes');
  say('  back to "before" means nothing leaked; RSS of a Node process does not shrink after a peak (V8 heap),');
  say("  mcpgate gives freed memory back (malloc_trim) only after connections fell to half their peak; what");
  say('  matters is that it stays flat from run to run.');
}
for (const r of results) {
  if (r.memory?.close_failures) say(`  ${r.name}: ${r.memory.close_failures} DELETEs failed`);
  if (r.per_session?.error) say(`  ${r.name}: KiB per idle session not measured: ${r.per_session.error}`);
}
say();

// ---- scenario 4 --------------------------------------------------------------------------

const largeOf = (r, sc) => (r.large ?? []).find((x) => x.scenario === sc);
/** MiB through the gateway per answered request: the request body and the answer body. */
const mibPerReq = (x) => (x && x.requests > 0 ? (x.rx_bytes / x.requests + (x.scenario === 'echo' ? x.bytes : 0) + 100) / 2 ** 20 : undefined);
const cpuMsPerReq = (x) => (x && x.ok > 0 && Number.isFinite(x.gateway_cpu_pct) ? (x.gateway_cpu_pct / 100) * x.seconds * 1e3 / x.ok : undefined);
const cpuMsPerMiB = (x) => (cpuMsPerReq(x) !== undefined ? cpuMsPerReq(x) / mibPerReq(x) : undefined);
/** The load generator's own CPU per answered request (bench/bigcall, or bench/direct's driver). */
const clientMsPerReq = (x) => {
  if (!x || !(x.ok > 0)) return undefined;
  if (Number.isFinite(x.client_cpu_s)) return (x.client_cpu_s * 1e3) / x.ok;
  if (Number.isFinite(x.driver_cpu_pct)) return (x.driver_cpu_pct / 100) * x.seconds * 1e3 / x.ok;
  return undefined;
};
for (const sc of ['echo', 'big_line']) {
  if (!full.some((r) => largeOf(r, sc))) continue;
  const bytes = full.map((r) => largeOf(r, sc)).find(Boolean).bytes;
  title(sc === 'echo'
    ? `Scenario 4: large payload: tools/call echo with a text of ${int(bytes)} bytes (that much in, that much out), 1 client`
    : `Scenario 4: large payload: tools/call big_line bytes=${int(bytes)} (a small request, a result of that many bytes), 1 client`);
  tbl(table(
    ['gateway', 'req/s', 'p50 ms', 'p99 ms', 'gw CPU', 'CPU ms/req', 'CPU ms/MiB', 'RSS MiB before/after', 'bad/err',
      'client CPU ms/req', 'other CPU', 'ratio req/s', 'ratio p50', 'ratio p99', 'ratio CPU/MiB'],
    full.map((r) => {
      const x = largeOf(r, sc);
      if (!x) return failedRow(r, r.error ?? 'not measured');
      if (x.refused) return failedRow(r, `refused the request: ${x.refused}`);
      const rss = r.name === 'direct' ? 'none' : `${mib(x.rss_before_kib)} / ${mib(x.rss_after_kib)}`;
      return [LABELS[r.name] ?? r.name, f(x.per_s, 1), f(x.p50_ms, 1), f(x.p99_ms, 1),
        x.gateway_cpu_pct === null ? 'none' : `${f(x.gateway_cpu_pct, 0)}%`, f(cpuMsPerReq(x), 2), f(cpuMsPerMiB(x), 2), rss,
        `${x.bad}/${x.errors}`, clientMsPerReq(x) === undefined ? 'n/a' : f(clientMsPerReq(x), 2),
        `${f(x.other_cpu_pct, 0)}%`, ratio(r, (y) => largeOf(y, sc)?.per_s),
        ratio(r, (y) => largeOf(y, sc)?.p50_ms), ratio(r, (y) => largeOf(y, sc)?.p99_ms), ratio(r, (y) => cpuMsPerMiB(largeOf(y, sc)))];
    }),
  ));
  for (const r of full) {
    const x = largeOf(r, sc);
    if (x?.example_bad) say(`  ${r.name}: first bad answer: ${x.example_bad}`);
  }
  const d = direct && largeOf(direct, sc);
  if (d) say(`  child direct: its driver used ${f(d.driver_cpu_pct, 0)}% of a core, the child ${f(d.children_cpu_pct, 0)}%.`);
  say();
}
if (full.some((r) => r.large)) {
  say('  CPU ms/MiB: the gateway\'s own CPU time (utime + stime of its process, children excluded) per MiB it');
  say('  carried: request body + answer body (echo: ~2 MiB per request, big_line: ~1 MiB). RSS before/after: the');
  say('  gateway process before the first large request and after the last. Every answer is checked whole (HTTP');
  say('  200, a result holding the whole text); a gateway that refuses the request (413, an error) says so.');
  say('  The client is bench/bigcall (C, libcurl, one keep-alive connection, a prebuilt request, 512 KiB reads),');
  say('  built like bench/direct\'s driver; client CPU ms/req is its own CPU per answer (for child direct, the');
  say('  driver\'s). wrk, used for small calls, reads 8 KiB at a time and spends ~2.6 ms per 1 MiB answer itself.');
}

// ---- scenario 5: idle GET streams on an HTTP route (bench/idle.mjs) ------------------------

const idle = ['mcpgate', 'nginx'].map((n) => {
  const file = path.join(dir, `idle-${n}.json`);
  return existsSync(file) ? { name: n, ...JSON.parse(readFileSync(file, 'utf8')) } : null;
}).filter(Boolean);
if (idle.length) {
  title(`Scenario 5: idle GET streams on an HTTP route (the same HTTP upstream behind each front): ${idle[0].n} streams`);
  const ng = idle.find((r) => r.name === 'nginx');
  tbl(table(['front', 'KiB per stream', 'ratio', 'RSS MiB: base', 'sessions made', 'streams open', '10 s after close', 'after close / sessions made', '10 s after DELETE', 'after DELETE / base', 'fds open / closed / deleted'],
    idle.map((r) => [
      r.name === 'nginx' ? 'nginx 1.22 (proxy_buffering off)' : 'mcpgate (auth: none)',
      f(r.kib_per_stream, 1),
      r.name === 'mcpgate' ? (ng ? `${(r.kib_per_stream / ng.kib_per_stream).toFixed(2)}x nginx` : 'n/a') : 'ref',
      mib(r.base.rss), mib(r.initialized.rss), mib(r.loaded.rss), mib(r.closed.rss),
      `${(r.closed.rss / r.initialized.rss).toFixed(2)}x`,
      r.deleted ? mib(r.deleted.rss) : 'n/a',
      r.deleted ? `${(r.deleted.rss / r.base.rss).toFixed(2)}x` : 'n/a',
      `${int(r.loaded.fds)} / ${int(r.closed.fds)} / ${r.deleted ? int(r.deleted.fds) : 'n/a'}`,
    ])));
  say('  KiB per stream: (RSS with the streams open - RSS after the sessions were made) / streams. "sessions');
  say('  made" is after N initializes through the front: mcpgate keeps a binding per upstream session (until its');
  say('  DELETE or http.session_idle), nginx keeps nothing. RSS of nginx is master + worker. "after close / sessions');
  say('  made" is whether what the streams took was given back (1.00x: all of it). Then every session is');
  say('  DELETEd: "after DELETE / base" is what the whole scenario left behind. It holds the idle connections');
  say('  to the upstream each front keeps for reuse (mcpgate: up to limits.outbound_idle_connections, 256 by');
  say('  default, which the 200 DELETEs in flight at a time open; nginx: keepalive 64), counted in the fds.');
  say();
}

// ---- scenario 6: the forwarding hop (two instances on one Redis) ---------------------------

const cluster = results.filter((r) => r.name.startsWith('cluster-'));
if (cluster.length) {
  const c16 = (r) => r.throughput?.[0];
  const own = cluster.find((r) => r.name === 'cluster-owner');
  title('Scenario 6: the forwarding hop: two instances on one Redis (auth: none), 16 sessions opened on A, tools/call echo sent to A or to B');
  tbl(table(['row', 'req/s', 'p50 ms', 'p99 ms', 'CPU both', 'CPU us/req', 'bad/err', 'other CPU', 'req/s vs owner', 'p50 added ms', 'CPU/req vs owner'],
    cluster.map((r) => {
      const t = c16(r);
      if (!t) return failedRow(r, r.error ?? 'not measured');
      const o = own && c16(own);
      const vs = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');
      return [LABELS[r.name], int(t.per_s), f(t.p50_ms, 3), f(t.p99_ms, 3), `${f(t.gateway_cpu_pct, 0)}%`, f(cpuPerReq(t), 0),
        `${t.bad}/${t.errors}`, `${f(t.other_cpu_pct, 0)}%`, r === own ? 'ref' : vs(t.per_s, o?.per_s),
        r === own ? 'ref' : f(t.p50_ms - (o?.p50_ms ?? NaN), 3), r === own ? 'ref' : vs(cpuPerReq(t), cpuPerReq(o))];
    })));
  say('  CPU both: the two mcpgate processes together (not the children, not wrk). Forwarded, B parses and');
  say('  authenticates the request, finds the owner in its peer cache, signs the hop and streams it to A\'s internal');
  say('  listener over a kept-alive connection; A verifies the hop and serves the call as its own.');
  say();
}

if (elapsed !== undefined) {
  say();
  say(`run time: ${elapsed} s`);
}

const asText = () => `${parts.map((p) => p.s).join('\n')}\n`;
function asMarkdown() {
  const lines = [];
  let first = true;
  for (const p of parts) {
    if (p.kind === 'title') lines.push('', `### ${p.s}`, '');
    else if (p.kind === 'table') lines.push(p.s, '');
    else if (first) {
      lines.push(`## ${p.s}`, '');
      first = false;
    } else if (p.s === '') lines.push('');
    else lines.push(`${p.s.trim()}  `); // two spaces: a line break in the same paragraph
  }
  return `${lines.join('\n').replace(/\n{3,}/g, '\n\n').trim()}\n`;
}
const report = asText();
process.stdout.write(report);
for (const [file, body] of [[out, report], [md, md ? asMarkdown() : '']]) {
  if (!file) continue;
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, body);
}
