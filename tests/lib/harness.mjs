// Black-box test harness for the mcpgate binary: free ports, a real
// redis-server, the gateway under ASan/UBSan, raw sockets and a tiny HTTP
// client. Only Node built-ins; everything listens on 127.0.0.1 (or ::1 /
// unix sockets when asked), every wait is bounded, and everything started
// here is torn down by a root after() hook even when a test fails.
//
//   import { startGateway, startRedis, request } from '../lib/harness.mjs';
//
// Environment:
//   MCPGATE_BIN    the binary under test (default <repo>/build/san/mcpgate)
//   REDIS_SERVER   redis-server (default /usr/bin/redis-server)

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MCPGATE_BIN = process.env.MCPGATE_BIN || path.join(REPO, 'build', 'san', 'mcpgate');
export const REDIS_SERVER = process.env.REDIS_SERVER || '/usr/bin/redis-server';

const SANITIZER_RE = /AddressSanitizer|LeakSanitizer|runtime error:/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- teardown registry ------------------------------------------------------

const cleanups = new Set(); // async functions, run in reverse order of registration
const children = new Set(); // every child process still alive (for the exit hook)

function onCleanup(fn) {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** Runs every pending cleanup now (also done by the root after() hook). */
export async function teardownAll() {
  const fns = [...cleanups].reverse();
  cleanups.clear();
  const errors = [];
  for (const fn of fns) {
    try {
      await fn();
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length) throw errors[0];
}

after(teardownAll);

process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/** Bounded wait for an async or sync predicate; returns its truthy value. */
export async function waitFor(pred, { timeoutMs = 5000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await pred();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= deadline) {
      const extra = lastErr ? ` (last error: ${lastErr.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${extra}`);
    }
    await sleep(intervalMs);
  }
}

/** Rejects with an Error if P does not settle within MS. */
export function withTimeout(p, ms, what = 'operation') {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---- temp files -------------------------------------------------------------

/** A fresh temp directory, removed at teardown. */
export function tmpDir(prefix = 'mcpgate-test-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let sharedDir;
function scratch() {
  if (!sharedDir || !fs.existsSync(sharedDir)) sharedDir = tmpDir();
  return sharedDir;
}

/** Writes BYTES (default 48 random bytes) to a 0600 temp file; returns its path. */
export function writeSecret(bytes = randomBytes(48), dir = scratch()) {
  const file = path.join(dir, `secret-${randomBytes(6).toString('hex')}`);
  fs.writeFileSync(file, bytes, { mode: 0o600 });
  return file;
}

/** Writes TEXT to a temp file named NAME; returns its path. */
export function writeTemp(name, text, dir = scratch()) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

// ---- ports ------------------------------------------------------------------

/** A TCP port that was free a moment ago on HOST. */
export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** True when a socket can be bound on HOST (e.g. '::1' on a host without IPv6). */
export function canBind(host) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(0, host, () => srv.close(() => resolve(true)));
  });
}

/** Resolves true when a TCP connect to host:port succeeds, false when refused/timed out. */
export function canConnect(port, host = '127.0.0.1', timeoutMs = 1000) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const done = (v) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

// ---- a tiny RESP client -------------------------------------------------------

function respEncode(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const b = Buffer.from(String(a));
    out += `$${b.length}\r\n${b}\r\n`;
  }
  return out;
}

/** Parses one RESP reply at the start of BUF: {value, rest} or null when incomplete. */
function respParse(buf) {
  const nl = buf.indexOf('\r\n');
  if (nl < 0) return null;
  const type = String.fromCharCode(buf[0]);
  const line = buf.subarray(1, nl).toString();
  const rest = buf.subarray(nl + 2);
  switch (type) {
    case '+':
      return { value: line, rest };
    case '-':
      return { value: new Error(line), rest };
    case ':':
      return { value: Number(line), rest };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, rest };
      if (rest.length < n + 2) return null;
      return { value: rest.subarray(0, n).toString(), rest: rest.subarray(n + 2) };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, rest };
      const items = [];
      let r = rest;
      for (let i = 0; i < n; i++) {
        const p = respParse(r);
        if (!p) return null;
        items.push(p.value);
        r = p.rest;
      }
      return { value: items, rest: r };
    }
    default:
      throw new Error(`bad RESP reply type ${JSON.stringify(type)}`);
  }
}

/**
 * Sends each command (an array of arguments) on one connection and resolves
 * with the replies in order (a RESP error reply becomes an Error value).
 */
export function redisCommands(port, commands, { host = '127.0.0.1', timeoutMs = 2000 } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host });
    let buf = Buffer.alloc(0);
    const replies = [];
    const finish = (err) => {
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve(replies);
    };
    const timer = setTimeout(() => finish(new Error(`redis on ${port}: no reply in ${timeoutMs} ms`)), timeoutMs);
    s.once('connect', () => s.write(commands.map(respEncode).join('')));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        let p;
        try {
          p = respParse(buf);
        } catch (e) {
          return finish(e);
        }
        if (!p) break;
        replies.push(p.value);
        buf = p.rest;
        if (replies.length === commands.length) return finish();
      }
    });
    s.once('error', finish);
    s.once('close', () => finish(new Error(`redis on ${port}: connection closed early`)));
  });
}

/** One command; rejects when redis answers with an error. */
export async function redisCommand(port, args, opts = {}) {
  const cmds = opts.password ? [['AUTH', opts.password], args] : [args];
  const replies = await redisCommands(port, cmds, opts);
  const v = replies[replies.length - 1];
  if (v instanceof Error) throw v;
  return v;
}

// ---- processes ----------------------------------------------------------------

function track(child) {
  children.add(child);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
    // A spawn that fails (ENOENT, EACCES) emits 'error' and never 'exit'.
    child.once('error', (err) => {
      children.delete(child);
      resolve({ code: null, signal: null, error: err });
    });
  });
  return child;
}

async function killAndWait(child, signal = 'SIGKILL', ms = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exited;
  child.kill(signal);
  try {
    return await withTimeout(child.exited, ms, `pid ${child.pid} exiting on ${signal}`);
  } catch (e) {
    child.kill('SIGKILL');
    await withTimeout(child.exited, 5000, `pid ${child.pid} exiting on SIGKILL`);
    throw e;
  }
}

// ---- redis --------------------------------------------------------------------

/**
 * Starts redis-server on a free loopback port. Returns
 * {port, url, password, stop(), kill9(), restart(), stderr()}; restart()
 * starts it again on the same port (after kill9() or stop()).
 */
export async function startRedis({ password } = {}) {
  const port = await freePort();
  const dir = tmpDir('mcpgate-redis-');
  let child = null;
  let out = '';
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--logfile', ''];
  if (password) args.push('--requirepass', password);

  async function launch() {
    child = track(spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const me = child;
    await waitFor(async () => {
      if (me.exitCode !== null) throw new Error(`redis-server exited (${me.exitCode}): ${out.slice(-2000)}`);
      const r = await redisCommand(port, ['PING'], { password, timeoutMs: 500 });
      return r === 'PONG';
    }, { timeoutMs: 10000, intervalMs: 50, what: `redis-server on port ${port} to answer PING` });
  }

  const r = {
    port,
    password,
    url: `redis://127.0.0.1:${port}/0`,
    get pid() {
      return child?.pid;
    },
    stderr: () => out,
    async stop() {
      if (child) await killAndWait(child, 'SIGTERM');
    },
    async kill9() {
      if (child) await killAndWait(child, 'SIGKILL');
    },
    async restart() {
      if (child && child.exitCode === null && child.signalCode === null) await killAndWait(child, 'SIGKILL');
      await launch();
    },
  };
  onCleanup(() => r.kill9());
  await launch();
  return r;
}

// ---- nginx -------------------------------------------------------------------------

export const NGINX = process.env.NGINX || '/usr/sbin/nginx';

/**
 * A real nginx on a free loopback port, in the foreground (one process, its
 * own prefix, temp paths and logs), doing plain round robin over UPSTREAMS
 * (ports on 127.0.0.1) with the settings of deploy/docker/nginx.conf:
 * HTTP/1.1 keep-alive upstream, SSE unbuffered. Returns
 * {port, url, stop(), errors()}.
 */
export async function startNginx({ upstreams }) {
  const port = await freePort();
  const dir = tmpDir('mcpgate-nginx-');
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(path.join(dir, d));
  const conf = `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream mcpgate {
${upstreams.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://mcpgate;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_read_timeout 1h;
      client_max_body_size 5m;
    }
  }
}
`;
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  let out = '';
  const child = track(spawn(NGINX, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'pipe', 'pipe'] }));
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const errors = () => {
    try {
      return fs.readFileSync(path.join(dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}): ${out}${errors()}`);
    return canConnect(port);
  }, { timeoutMs: 10000, intervalMs: 50, what: `nginx on port ${port}` });
  const n = {
    port,
    url: `http://127.0.0.1:${port}`,
    errors,
    async stop() {
      await killAndWait(child, 'SIGQUIT');
    },
  };
  onCleanup(() => killAndWait(child, 'SIGKILL'));
  return n;
}

/**
 * A "black hole": a TCP server that accepts connections and never answers.
 * Returns {port, url, connections(), stop()}.
 */
export async function startBlackHole() {
  const sockets = new Set();
  let accepted = 0;
  const srv = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address();
  const bh = {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    connections: () => accepted,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => srv.close(() => resolve()));
    },
  };
  onCleanup(() => bh.stop());
  return bh;
}

// ---- the gateway ----------------------------------------------------------------

/**
 * A minimal valid configuration. Options:
 *   port        the first listener (required unless listen is given)
 *   listen      array of listen specs (default ["127.0.0.1:<port>"])
 *   store       'memory' | {url, timeout, password, tls_*} (default memory)
 *   limits      object rendered into server.limits
 *   log         object rendered into log (default {level: info})
 *   metrics     object rendered into metrics
 *   extra       raw YAML appended at the end
 */
export function gatewayConfig({ port, listen, store = 'memory', limits, log, metrics, extra = '' } = {}) {
  const listens = listen || [`127.0.0.1:${port}`];
  const firstTcp = port || 8080;
  const lines = [
    'server:',
    `  listen: [${listens.map((l) => JSON.stringify(l)).join(', ')}]`,
    `  public_url: http://127.0.0.1:${firstTcp}`,
  ];
  if (limits) lines.push(`  limits: ${flowMap(limits)}`);
  if (store === 'memory') {
    lines.push('store:', '  backend: memory');
  } else {
    const redis = { url: store.url };
    if (store.timeout) redis.timeout = store.timeout;
    if (store.password) redis.password = store.password;
    for (const k of ['tls_ca_file', 'tls_cert_file', 'tls_key_file', 'tls_server_name', 'tls_verify']) {
      if (store[k] !== undefined) redis[k] = store[k];
    }
    lines.push('store:', '  backend: redis', `  redis: ${flowMap(redis)}`);
  }
  lines.push(`log: ${flowMap(log || { level: 'info' })}`);
  if (metrics) lines.push(`metrics: ${flowMap(metrics)}`);
  if (extra) lines.push(extra);
  return lines.join('\n') + '\n';
}

function flowMap(obj) {
  const parts = Object.entries(obj).map(([k, v]) => {
    if (v && typeof v === 'object') return `${k}: ${flowMap(v)}`;
    if (typeof v === 'boolean' || typeof v === 'number') return `${k}: ${v}`;
    return `${k}: ${JSON.stringify(String(v))}`;
  });
  return `{ ${parts.join(', ')} }`;
}

function sanitizerEnv(extra) {
  return {
    ...process.env,
    ASAN_OPTIONS: process.env.ASAN_OPTIONS || 'detect_leaks=1:abort_on_error=0:halt_on_error=1',
    UBSAN_OPTIONS: process.env.UBSAN_OPTIONS || 'print_stacktrace=1:halt_on_error=1',
    ...extra,
  };
}

/** Throws when TEXT holds a sanitizer report. */
export function assertNoSanitizerReport(text, who = 'mcpgate') {
  const m = SANITIZER_RE.exec(text);
  if (m) {
    const start = Math.max(0, m.index - 500);
    throw new Error(`${who}: sanitizer report in stderr:\n${text.slice(start, start + 6000)}`);
  }
}

/**
 * Starts `$MCPGATE_BIN -c FILE` and waits for GET /healthz → 200.
 *
 *   config   YAML text, or a function ({port, dir}) => YAML text
 *   port     the TCP port the config listens on (default: a free one, passed
 *            to a config function; a config string must use it itself)
 *   env      extra environment
 *   args     extra arguments after -c FILE
 *   health   {port, host, socketPath} to probe instead of 127.0.0.1:<port>;
 *            false: do not wait for health
 *   startTimeoutMs  default 10000
 *   nofile   when set, the open-file limit (ulimit -n) the binary runs with, or
 *            {soft, hard} for the two limits apart
 *            (spawned as sh -c 'ulimit -n N; exec mcpgate …': same pid)
 *
 * Returns {port, url, dir, configPath, proc, logs(), stderr(), waitForLog(),
 *          writeConfig(), reload(), stop(signal)}.
 */
export async function startGateway({ config, port, env = {}, args = [], health, startTimeoutMs = 10000, nofile } = {}) {
  port = port || (await freePort());
  const dir = tmpDir('mcpgate-gw-');
  const configPath = path.join(dir, 'mcpgate.yaml');
  const text = typeof config === 'function' ? config({ port, dir }) : config;
  if (typeof text !== 'string') throw new Error('startGateway: config must be YAML text or a function');
  fs.writeFileSync(configPath, text);

  const argv = ['-c', configPath, ...args];
  // nofile: N (soft and hard), or {soft, hard}
  const ulimit = typeof nofile === 'object' ? 'ulimit -Sn "${0%:*}" && ulimit -Hn "${0#*:}" && exec "$@"' : 'ulimit -n "$0" && exec "$@"';
  const nofileArg = typeof nofile === 'object' ? `${nofile.soft}:${nofile.hard}` : String(nofile);
  const proc = track(nofile
    ? spawn('/bin/sh', ['-c', ulimit, nofileArg, MCPGATE_BIN, ...argv], {
      env: sanitizerEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    : spawn(MCPGATE_BIN, argv, { env: sanitizerEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
  let err = '';
  let out = '';
  const waiters = new Set();
  proc.stderr.setEncoding('utf8');
  proc.stdout.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    err += d;
    for (const w of waiters) w();
  });
  proc.stdout.on('data', (d) => (out += d));
  const stderrClosed = new Promise((resolve) => proc.stderr.once('close', resolve));

  let stopped = null;
  const gw = {
    port,
    url: `http://127.0.0.1:${port}`,
    dir,
    configPath,
    proc,
    pid: proc.pid,
    stderr: () => err,
    stdout: () => out,
    /** Every stderr line that parses as a JSON object. */
    logs() {
      const lines = [];
      for (const line of err.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          lines.push(JSON.parse(line));
        } catch {
          /* a partial last line, or not ours */
        }
      }
      return lines;
    },
    /** Resolves with the first log line (parsed) for which PRED is true. */
    waitForLog(pred, ms = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = gw.logs().find(pred);
          if (hit) {
            done();
            resolve(hit);
          } else if (proc.exitCode !== null || proc.signalCode !== null) {
            done();
            reject(new Error(`mcpgate exited before the log line appeared; stderr:\n${err.slice(-4000)}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no matching log line within ${ms} ms; stderr:\n${err.slice(-4000)}`));
        }, ms);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    writeConfig(newText) {
      fs.writeFileSync(configPath, newText);
    },
    reload() {
      proc.kill('SIGHUP');
    },
    get exited() {
      return proc.exitCode !== null || proc.signalCode !== null;
    },
    /**
     * Sends SIGNAL (when still running), waits (bounded) for the exit, and
     * returns the exit code (or the signal name when it died of a signal).
     * Throws when stderr holds a sanitizer report.
     */
    async stop(signal = 'SIGTERM', ms = 15000) {
      if (!stopped) {
        stopped = (async () => {
          const { code, signal: sig } = await killAndWait(proc, signal, ms);
          await withTimeout(stderrClosed, 2000, 'mcpgate stderr to close').catch(() => {});
          return code !== null ? code : sig;
        })();
      }
      const rc = await stopped;
      assertNoSanitizerReport(err);
      return rc;
    },
  };
  onCleanup(() => gw.stop('SIGTERM', 5000));

  if (health !== false) {
    const h = health || { port, host: '127.0.0.1' };
    try {
      await waitFor(async () => {
        if (gw.exited) throw new Error(`mcpgate exited with ${proc.exitCode ?? proc.signalCode}`);
        const r = await request({ ...h, path: '/healthz', timeoutMs: 1000 });
        return r.status === 200;
      }, { timeoutMs: startTimeoutMs, intervalMs: 50, what: 'GET /healthz to answer 200' });
    } catch (e) {
      throw new Error(`mcpgate did not become healthy: ${e.message}\nconfig:\n${text}\nstderr:\n${err.slice(-6000)}`);
    }
  }
  return gw;
}

/** Runs the binary to completion: {code, signal, stdout, stderr}. */
export function runCli(args, { env = {}, timeoutMs = 10000, cwd } = {}) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(MCPGATE_BIN, args, { env: sanitizerEnv(env), cwd, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mcpgate ${args.join(' ')} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// ---- HTTP clients -----------------------------------------------------------------

/**
 * One HTTP request on a fresh connection (no keep-alive pool):
 * {port, host='127.0.0.1' | socketPath, method='GET', path='/', headers, body, timeoutMs,
 *  localAddress (the source address, e.g. '127.0.0.2')}
 * → {status, headers, body, json()}. Rejects on connection errors and timeouts.
 */
export function request({ port, host = '127.0.0.1', socketPath, method = 'GET', path: p = '/', headers = {}, body, timeoutMs = 5000, localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const opts = { method, path: p, headers: { ...headers }, agent: false, timeout: timeoutMs };
    if (localAddress) opts.localAddress = localAddress;
    if (socketPath) opts.socketPath = socketPath;
    else Object.assign(opts, { host, port, family: net.isIPv6(host) ? 6 : undefined });
    if (body !== undefined && opts.headers['content-length'] === undefined) {
      opts.headers['content-length'] = Buffer.byteLength(body);
    }
    const timer = setTimeout(() => {
      req.destroy(new Error(`${method} ${p}: no response within ${timeoutMs} ms`));
    }, timeoutMs);
    const req = http.request(opts, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: text,
          json() {
            return JSON.parse(text);
          },
        });
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/**
 * Writes CHUNKS (strings or Buffers) on one raw connection, pausing PAUSEMS
 * between writes, then reads until the first response is complete (by
 * Content-Length or chunked terminator), the server closes, or TIMEOUTMS.
 * Resolves with the raw response text ('' when the server sent nothing).
 * Options: {pauseMs=50, timeoutMs=5000, host, socketPath,
 *           end=false (half-close after writing),
 *           untilClose=false (read every response until the server closes, for pipelining)}
 */
export function rawRequest(port, chunks, { pauseMs = 50, timeoutMs = 5000, host = '127.0.0.1', socketPath, end = false, untilClose = false } = {}) {
  return new Promise((resolve, reject) => {
    const s = socketPath ? net.connect({ path: socketPath }) : net.connect({ port, host });
    let buf = Buffer.alloc(0);
    let settled = false;
    const finish = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve(buf.toString('latin1'));
    };
    const timer = setTimeout(() => finish(), timeoutMs);
    s.on('error', (e) => {
      // A reset after the server answered (it closed with unread input) is an ordinary end.
      if (buf.length > 0 || e.code === 'ECONNRESET' || e.code === 'EPIPE') finish();
      else finish(e);
    });
    s.on('close', () => finish());
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!untilClose && responseComplete(buf)) finish();
    });
    s.once('connect', async () => {
      for (let i = 0; i < chunks.length; i++) {
        if (settled || s.destroyed) return;
        if (i > 0 && pauseMs > 0) await sleep(pauseMs);
        if (settled || s.destroyed) return;
        s.write(chunks[i]);
      }
      if (end && !s.destroyed) s.end();
    });
  });
}

function responseComplete(buf) {
  const sep = buf.indexOf('\r\n\r\n');
  if (sep < 0) return false;
  const head = buf.subarray(0, sep).toString('latin1');
  const bodyLen = buf.length - sep - 4;
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (cl) return bodyLen >= Number(cl[1]);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return buf.subarray(sep + 4).includes('0\r\n\r\n');
  if (/^HTTP\/1\.\d (1\d\d|204|304)/.test(head)) return true;
  return false; // read until close
}

/** Splits a raw response into {status, headers (lower-case keys), body}. */
export function parseRawResponse(text) {
  const sep = text.indexOf('\r\n\r\n');
  const head = sep < 0 ? text : text.slice(0, sep);
  const body = sep < 0 ? '' : text.slice(sep + 4);
  const [statusLine, ...lines] = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine || '');
  const headers = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: m ? Number(m[1]) : 0, statusLine, headers, body };
}

/** Parses a Prometheus text exposition into a Map "name{labels}" → number. */
export function parseMetrics(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}
