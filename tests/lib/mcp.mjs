// MCP test helpers for the proxy suites: route YAML, a raw Streamable HTTP
// client (fetch-free, node:http, so every header and SSE byte is visible),
// an incremental SSE reader, /proc inspection of the gateway's children and
// descriptors, and an idempotent `npm ci` for tests/conformance.
//
//   import { routesYaml, mcpPost, McpClient, childPids } from '../lib/mcp.mjs';
//
// Only Node built-ins; everything talks to 127.0.0.1, and every wait is bounded.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { REPO, waitFor } from './harness.mjs';

export const WHOAMI_BIN = process.env.WHOAMI_BIN || path.join(REPO, 'build', 'san', 'examples', 'whoami-server');
export const CONFORMANCE_DIR = path.join(REPO, 'tests', 'conformance');
export const ACCEPT_BOTH = 'application/json, text/event-stream';
export const LATEST = '2025-11-25';

// ---- configuration ------------------------------------------------------------

/** A value as YAML flow text (strings always quoted, so no YAML 1.1 surprises). */
export function yamlFlow(v) {
  if (Array.isArray(v)) return `[${v.map(yamlFlow).join(', ')}]`;
  if (v && typeof v === 'object') {
    return `{ ${Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => `${k}: ${yamlFlow(x)}`).join(', ')} }`;
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(String(v));
}

/** `routes:` with one flow mapping per route (for gatewayConfig({extra})). */
export function routesYaml(routes) {
  return ['routes:', ...routes.map((r) => `  - ${yamlFlow(r)}`)].join('\n');
}

/** An auth: none STDIO route running the whoami example server. */
export function whoamiRoute({ name = 'who', path: p = '/mcp/who', stdio = {}, ...rest } = {}) {
  return { name, path: p, auth: 'none', stdio: { command: [WHOAMI_BIN], ...stdio }, ...rest };
}

// ---- JSON-RPC -------------------------------------------------------------------

export function initializeMessage(id = 1, { protocolVersion = LATEST, capabilities = {} } = {}) {
  return {
    jsonrpc: '2.0', id, method: 'initialize',
    params: { protocolVersion, capabilities, clientInfo: { name: 'mcpgate-tests', version: '1.0.0' } },
  };
}

export function toolCall(id, name, args = {}, progressToken) {
  const params = { name, arguments: args };
  if (progressToken !== undefined) params._meta = { progressToken };
  return { jsonrpc: '2.0', id, method: 'tools/call', params };
}

// ---- SSE --------------------------------------------------------------------------

/**
 * Reads an SSE body incrementally. Every block with at least one field is an
 * event {id, event, data, retry} (so a priming event with an empty data line
 * is seen); comment lines (keep-alives) are counted, not returned.
 */
export class SseReader {
  constructor(res) {
    this.res = res;
    this.buf = '';
    this.queue = [];
    this.waiters = [];
    this.ended = false;
    this.error = null;
    this.comments = 0;
    this.received = [];
    res.setEncoding('utf8');
    res.on('data', (d) => {
      this.buf += d;
      this._parse();
    });
    const end = (err) => {
      if (this.ended) return;
      this.ended = true;
      if (err) this.error = err;
      this._wake();
    };
    res.on('end', () => end());
    res.on('close', () => end());
    res.on('error', (e) => end(e));
  }

  _parse() {
    for (;;) {
      const m = /\r?\n\r?\n/.exec(this.buf);
      if (!m) return;
      const block = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      const ev = {};
      let fields = 0;
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(':')) {
          this.comments++;
          continue;
        }
        const i = line.indexOf(':');
        const name = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? '' : line.slice(i + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        fields++;
        if (name === 'data') data.push(value);
        else if (name === 'id') ev.id = value;
        else if (name === 'event') ev.event = value;
        else if (name === 'retry') ev.retry = Number(value);
      }
      if (!fields) continue;
      ev.data = data.join('\n');
      this.received.push(ev);
      this.queue.push(ev);
      this._wake();
    }
  }

  _wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** The next event, or null when the stream ended; rejects after MS. */
  async next(ms = 5000) {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.queue.length) return this.queue.shift();
      if (this.ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no SSE event within ${ms} ms (received so far: ${JSON.stringify(this.received).slice(0, 2000)})`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves when the stream has ended (true) or after MS (false). */
  async waitEnd(ms = 5000) {
    const deadline = Date.now() + ms;
    while (!this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }

  /** Every remaining event until the stream ends (rejects after MS). */
  async rest(ms = 10000) {
    const out = [];
    const deadline = Date.now() + ms;
    for (;;) {
      const ev = await this.next(Math.max(1, deadline - Date.now()));
      if (ev === null) return out;
      out.push(ev);
    }
  }

  /** Drops the connection (a client disconnect). */
  close() {
    this.res.destroy();
  }
}

/** The JSON payload of an SSE event, or null for an empty (priming) one. */
export function eventJson(ev) {
  return ev && ev.data ? JSON.parse(ev.data) : null;
}

// ---- HTTP -----------------------------------------------------------------------

/**
 * One HTTP request to the gateway on a fresh connection. Resolves when the
 * response head arrived with {status, headers, sse (an SseReader for
 * text/event-stream), body() (the whole text otherwise), json(), close()}.
 *
 * opts: {port, host, path, method='POST', body (object → JSON), rawBody,
 *        session, protocolVersion, accept, contentType, lastEventId, origin,
 *        headers, timeoutMs (until the head)}
 */
export function mcpRequest(opts) {
  const {
    port, host = '127.0.0.1', path: p, method = 'POST', body, rawBody, session, protocolVersion,
    accept = method === 'GET' ? 'text/event-stream' : ACCEPT_BOTH, contentType = 'application/json',
    lastEventId, origin, headers = {}, timeoutMs = 10000, localAddress,
  } = opts;
  const h = {};
  if (accept !== null) h.accept = accept;
  if (session) h['mcp-session-id'] = session;
  if (protocolVersion) h['mcp-protocol-version'] = protocolVersion;
  if (lastEventId) h['last-event-id'] = lastEventId;
  if (origin) h.origin = origin;
  let payload;
  if (rawBody !== undefined) payload = Buffer.isBuffer(rawBody) ? rawBody : Buffer.from(rawBody);
  else if (body !== undefined) payload = Buffer.from(JSON.stringify(body));
  if (payload !== undefined) {
    if (contentType !== null) h['content-type'] = contentType;
    h['content-length'] = payload.length;
  }
  Object.assign(h, headers);
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path: p, method, headers: h, agent: false, localAddress });
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${p}: no response head within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.on('response', (res) => {
      clearTimeout(timer);
      const ctype = res.headers['content-type'] || '';
      const out = {
        status: res.statusCode, headers: res.headers, req, res, contentType: ctype,
        close: () => res.destroy(),
      };
      if (ctype.startsWith('text/event-stream')) {
        out.sse = new SseReader(res);
        out.body = async () => {
          await out.sse.waitEnd(10000);
          return out.sse.received.map((e) => e.data).join('\n');
        };
      } else {
        const chunks = [];
        const done = new Promise((r, j) => {
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => r(Buffer.concat(chunks).toString('utf8')));
          res.on('error', j);
        });
        out.body = () => withDeadline(done, 10000, `${method} ${p} body`);
      }
      out.json = async () => {
        const t = await out.body();
        try {
          return JSON.parse(t);
        } catch {
          throw new Error(`${method} ${p}: ${out.status} body is not JSON: ${t.slice(0, 500)}`);
        }
      };
      resolve(out);
    });
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

function withDeadline(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, j) => (t = setTimeout(() => j(new Error(`${what}: not done within ${ms} ms`)), ms)))])
    .finally(() => clearTimeout(t));
}

/**
 * POSTs one message and reads the whole answer: for JSON {status, headers,
 * json}; for SSE {status, headers, events, messages (parsed payloads, priming
 * excluded)}; the response to the message's id is `response`.
 */
export async function mcpPost(port, p, body, opts = {}) {
  const r = await mcpRequest({ port, path: p, body, ...opts });
  const out = { status: r.status, headers: r.headers, contentType: r.contentType };
  if (r.sse) {
    out.events = await r.sse.rest(opts.readMs || 15000);
    out.messages = out.events.filter((e) => e.data).map(eventJson);
    out.response = out.messages.find((m) => m.id !== undefined && m.id === body?.id && (m.result || m.error));
  } else {
    out.text = await r.body();
    try {
      out.json = out.text ? JSON.parse(out.text) : null;
    } catch {
      out.json = undefined;
    }
    out.response = out.json;
  }
  return out;
}

/**
 * A Streamable HTTP client session against one route. Methods answer like
 * mcpPost; the negotiated version is sent as MCP-Protocol-Version after
 * initialize.
 */
export class McpClient {
  constructor(port, p, { protocolVersion = LATEST, capabilities = {} } = {}) {
    this.port = port;
    this.path = p;
    this.wantVersion = protocolVersion;
    this.capabilities = capabilities;
    this.session = null;
    this.version = null;
    this.nextId = 1;
  }

  async initialize() {
    const r = await mcpPost(this.port, this.path, initializeMessage(this.nextId++, { protocolVersion: this.wantVersion, capabilities: this.capabilities }));
    if (r.status !== 200) throw new Error(`initialize: HTTP ${r.status}: ${r.text}`);
    this.session = r.headers['mcp-session-id'];
    this.version = r.response?.result?.protocolVersion;
    const n = await this.notify('notifications/initialized');
    if (n.status !== 202) throw new Error(`notifications/initialized: HTTP ${n.status}`);
    return r;
  }

  opts(extra = {}) {
    return { session: this.session, protocolVersion: this.version, ...extra };
  }

  notify(method, params) {
    const msg = { jsonrpc: '2.0', method };
    if (params) msg.params = params;
    return mcpPost(this.port, this.path, msg, this.opts());
  }

  request(method, params = {}, extra = {}) {
    return mcpPost(this.port, this.path, { jsonrpc: '2.0', id: this.nextId++, method, params }, this.opts(extra));
  }

  callTool(name, args = {}, extra = {}) {
    return mcpPost(this.port, this.path, toolCall(this.nextId++, name, args, extra.progressToken), this.opts(extra));
  }

  /** Starts a POST and returns the raw mcpRequest handle (for streaming reads). */
  start(body, extra = {}) {
    return mcpRequest({ port: this.port, path: this.path, body, ...this.opts(extra) });
  }

  async delete() {
    const r = await mcpRequest({ port: this.port, path: this.path, method: 'DELETE', session: this.session, protocolVersion: this.version, accept: null });
    await r.body();
    return r.status;
  }
}

/** The text of the first content block of a tools/call result. */
export function toolText(response) {
  return response?.result?.content?.[0]?.text;
}

// ---- /proc ------------------------------------------------------------------------

/** PIDs of the direct children of PID (every thread's children list). */
export function childPids(pid) {
  const out = new Set();
  let tasks = [];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  for (const t of tasks) {
    try {
      for (const c of fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/)) {
        if (c) out.add(Number(c));
      }
    } catch {
      /* the thread ended */
    }
  }
  return [...out];
}

/** The state letter of PID (R, S, Z, ...) or null when it does not exist. */
export function procState(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

export function pidExists(pid) {
  return fs.existsSync(`/proc/${pid}`);
}

/** Open descriptors of PID. */
export function fdCount(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** The newest child of PID that is not in BEFORE (waits for it). */
/** The niceness of PID (field 19 of /proc/PID/stat), or null when it is gone. */
export function procNice(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  } catch {
    return null;
  }
}

export async function newChild(pid, before = [], timeoutMs = 5000) {
  return waitFor(() => childPids(pid).find((c) => !before.includes(c)), { timeoutMs, intervalMs: 10, what: `a new child of ${pid}` });
}

// ---- npm ----------------------------------------------------------------------------

/**
 * `npm ci` in DIR (default tests/conformance) unless node_modules already
 * matches the lock file. Returns null on success, else the error text.
 */
export function ensureNpmDeps(dir = CONFORMANCE_DIR, timeoutMs = 300000) {
  const lock = path.join(dir, 'package-lock.json');
  const stamp = path.join(dir, 'node_modules', '.package-lock.json');
  if (fs.existsSync(stamp) && fs.statSync(stamp).mtimeMs >= fs.statSync(lock).mtimeMs) return null;
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, encoding: 'utf8', timeout: timeoutMs });
  if (r.status === 0) return null;
  return `npm ci in ${dir} failed (status ${r.status}${r.error ? `, ${r.error.message}` : ''}):\n${(r.stdout || '') + (r.stderr || '')}`.slice(-4000);
}
