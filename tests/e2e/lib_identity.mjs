// Helpers for identity_policy.test.mjs: the whole stack (a real redis-server,
// the test IdP, mcpgate under ASan with an identity signing key, the whoami
// example over STDIO and a Streamable HTTP MCP server built with the official
// SDK), tokens through the real OAuth flow (DCR public client → /authorize →
// consent → IdP login → /token), the SDK client, and raw MCP POSTs.
//
// Every process started here is stopped by an after() hook (the harness's for
// redis and the gateway, ours for the IdP and the upstream), also when a test
// fails. Everything listens on 127.0.0.1.

import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after } from 'node:test';
import { pathToFileURL } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

import { CookieJar, loginViaForm, makePkce } from '../idp/browserless.mjs';
import { startIdpProcess } from '../idp/launch.mjs';
import {
  IDP_CLIENT_ID, IDP_CLIENT_SECRET, MemoryOAuthProvider, USERS, consentRule, parseChallenge, recordingFetch,
} from '../lib/oauth.mjs';
import {
  REPO, freePort, runCli, sleep, startGateway, startRedis, tmpDir, waitFor, withTimeout, writeSecret,
} from '../lib/harness.mjs';

export { CookieJar, IDP_CLIENT_ID, IDP_CLIENT_SECRET, USERS, consentRule, parseChallenge, recordingFetch };

// ---- jose ----------------------------------------------------------------------------
// tests/e2e/package.json does not list jose (it is only there as a dependency of the SDK):
// use it from there once it is declared, else from tests/idp (which declares it).
const E2E_DIR = path.join(REPO, 'tests', 'e2e');
const e2ePkg = JSON.parse(fs.readFileSync(path.join(E2E_DIR, 'package.json'), 'utf8'));
export const JOSE_FROM = e2ePkg.dependencies?.jose ? 'tests/e2e' : 'tests/idp';
const joseEntry = createRequire(path.join(REPO, JOSE_FROM, 'package.json')).resolve('jose');
export const jose = await import(pathToFileURL(joseEntry).href);

// ---- constants -----------------------------------------------------------------------

export const WHOAMI_BIN = process.env.WHOAMI_BIN || path.join(REPO, 'build', 'san', 'examples', 'whoami-server');
/** server.limits.shutdown_grace of the suite's gateways. */
export const SHUTDOWN_GRACE = '3s';
export const SCOPES = {
  'mcp:tools': 'Use the tools of the MCP servers behind this gateway',
  'mcp:admin': 'Administer: tools that change things',
};

// ---- process lifetimes ---------------------------------------------------------------

const stoppers = new Set();
/**
 * Stops every SDK client, upstream server and IdP started here (newest first). Call it from
 * a suite's after(): the root after() below may not run when an earlier root hook (the
 * harness's, which throws on a sanitizer report) fails.
 */
export async function stopAll() {
  for (const stop of [...stoppers].reverse()) {
    stoppers.delete(stop);
    await stop().catch(() => {});
  }
}
after(stopAll);

/** `mcpgate keygen FILE`; returns the key id it printed. */
export async function keygen(file) {
  const r = await runCli(['keygen', file]);
  if (r.code !== 0) throw new Error(`mcpgate keygen ${file}: exit ${r.code}: ${r.stderr}`);
  const m = /kid ([A-Za-z0-9_-]+)\)/.exec(r.stdout);
  if (!m) throw new Error(`mcpgate keygen printed no kid: ${r.stdout}`);
  return m[1];
}

// ---- the HTTP upstream: a Streamable HTTP MCP server built with the SDK -------------------

/**
 * Starts a stateful Streamable HTTP MCP server (official SDK) at /mcp with tools
 *   headers       returns the request headers it received (extra.requestInfo.headers), as JSON text
 *   manager_only  a tool the gateway should show to managers only (rule on the route)
 * Returns {url, port, requests (every HTTP request: method, headers, rawHeaders),
 *          delayNextInitialize(ms) → a promise that resolves when that initialize has arrived,
 *          stop()}.
 */
export async function startUpstream() {
  const transports = new Map();
  const requests = [];
  let delay = null; // {ms, arrived}

  function newServer() {
    const server = new McpServer({ name: 'headers-upstream', version: '1.0.0' });
    server.registerTool('headers', { description: 'The HTTP request headers this server received' }, async (extra) => ({
      content: [{ type: 'text', text: JSON.stringify(extra.requestInfo?.headers ?? null) }],
    }));
    server.registerTool('manager_only', { description: 'A tool for managers' }, async () => ({
      content: [{ type: 'text', text: 'for managers only' }],
    }));
    return server;
  }

  const srv = http.createServer(async (req, res) => {
    try {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const text = Buffer.concat(chunks).toString('utf8');
      let body;
      if (text) {
        try {
          body = JSON.parse(text);
        } catch {
          res.writeHead(400).end('bad json');
          return;
        }
      }
      requests.push({ method: req.method, url: req.url, headers: { ...req.headers }, rawHeaders: [...req.rawHeaders], body });
      const sid = req.headers['mcp-session-id'];
      let transport = sid ? transports.get(sid) : undefined;
      if (!transport) {
        if (sid || req.method !== 'POST' || !isInitializeRequest(body)) {
          res.writeHead(sid ? 404 : 400, { 'content-type': 'application/json' })
            .end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: sid ? 'Session not found' : 'No session' } }));
          return;
        }
        if (delay) {
          const d = delay;
          delay = null;
          d.arrived();
          await sleep(d.ms);
        }
        const t = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => transports.set(id, t),
        });
        t.onclose = () => {
          if (t.sessionId) transports.delete(t.sessionId);
        };
        await newServer().connect(t);
        transport = t;
      }
      await transport.handleRequest(req, res, body);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500).end(String(e?.message || e));
    }
  });
  const sockets = new Set();
  srv.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const t of transports.values()) await t.close().catch(() => {});
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => srv.close(() => resolve()));
  };
  stoppers.add(stop);
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    requests,
    delayNextInitialize(ms) {
      return new Promise((resolve) => {
        delay = { ms, arrived: resolve };
      });
    },
    stop,
  };
}

// ---- the gateway configuration ---------------------------------------------------------------

/**
 * The routes of the suite:
 *   whoami    STDIO whoami example; identity env+jwt+meta; tools: manager_report for
 *             MANAGERREPORTROLES, add needs mcp:admin, everything else allowed
 *   upstream  the SDK server over HTTP; identity headers+jwt; manager_only for managers
 *   managers  STDIO whoami; require roles [manager]
 *   admin     STDIO whoami; require scopes [mcp:admin]
 */
export function suiteRoutes({ upstreamUrl, managerReportRoles = ['manager'] }) {
  return [
    {
      name: 'whoami',
      path: '/mcp/whoami',
      description: 'Shows who mcpgate says you are',
      stdio: { command: [WHOAMI_BIN] },
      identity: { env: true, jwt: true, meta: true },
      tools: [
        { match: 'manager_report', roles: managerReportRoles },
        { match: 'add', scopes: ['mcp:admin'] },
        { match: '*' },
      ],
      default: 'allow',
    },
    {
      name: 'upstream',
      path: '/mcp/upstream',
      http: { url: upstreamUrl, timeout: '20s' },
      identity: { headers: true, jwt: true },
      tools: [{ match: 'manager_only', roles: ['manager'] }],
    },
    {
      name: 'managers',
      path: '/mcp/managers',
      stdio: { command: [WHOAMI_BIN] },
      require: { roles: ['manager'] },
    },
    {
      name: 'admin',
      path: '/mcp/admin',
      stdio: { command: [WHOAMI_BIN] },
      require: { scopes: ['mcp:admin'] },
    },
  ];
}

/** The gateway configuration as JSON text (YAML flow style). */
export function gatewayConfig({ port, redisUrl, prefix, issuer, secretFile, signingKey, previousKey, routes }) {
  const identity = { signing_key_file: signingKey };
  if (previousKey) identity.previous_key_file = previousKey;
  const cfg = {
    server: {
      listen: [`127.0.0.1:${port}`],
      public_url: `http://127.0.0.1:${port}`,
      limits: { shutdown_grace: SHUTDOWN_GRACE },
    },
    store: { backend: 'redis', redis: { url: redisUrl, prefix, timeout: '2s' } },
    idp: {
      preset: 'oidc',
      issuer,
      client_id: IDP_CLIENT_ID,
      client_secret: IDP_CLIENT_SECRET,
      scopes: ['openid', 'profile', 'email', 'roles', 'groups'],
      timeout: '5s',
    },
    // Many registrations from one address: the suite is not what registration.rate guards against.
    oauth: { secret_file: secretFile, scopes: SCOPES, registration: { rate: '1000/min' } },
    identity,
    routes,
    log: { level: 'info' },
  };
  return `${JSON.stringify(cfg, null, 2)}\n`;
}

// ---- the stack -----------------------------------------------------------------------------------

/**
 * redis + IdP + upstream + identity key + gateway. Returns a stack object:
 *   url, port, gw, redis, idp, upstream, dir, keys: {current: {file, kid}, previous},
 *   routeUrl(path), config(overrides) (the YAML text for the current state),
 *   reload(overrides) (rewrite + SIGHUP + wait for "configuration reloaded"),
 *   restart(overrides) (stop, start again on the same port; tokens survive in redis)
 */
export async function startIdentityStack() {
  const redis = await startRedis();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const idp = await startIdpProcess({ args: ['--port', '0', '--redirect-uri', `${url}/callback`] });
  stoppers.add(() => idp.stop());
  const upstream = await startUpstream();
  const dir = tmpDir('mcpgate-identity-');
  const keyFile = path.join(dir, 'id.pem');
  const kid = await keygen(keyFile);
  const state = {
    port,
    redisUrl: redis.url,
    prefix: `idt${randomBytes(4).toString('hex')}:`,
    issuer: idp.issuer,
    secretFile: writeSecret(Buffer.from(randomBytes(48).toString('base64'))),
    signingKey: keyFile,
    previousKey: undefined,
    managerReportRoles: ['manager'],
  };
  const s = {
    url,
    port,
    redis,
    idp,
    upstream,
    dir,
    keys: { current: { file: keyFile, kid }, previous: undefined },
    gw: null,
    routeUrl: (p) => `${url}${p}`,
    config(over = {}) {
      Object.assign(state, over);
      return gatewayConfig({ ...state, routes: suiteRoutes({ upstreamUrl: upstream.url, managerReportRoles: state.managerReportRoles }) });
    },
    async start() {
      s.gw = await startGateway({ port, config: s.config() });
      await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, {
        timeoutMs: 15000, intervalMs: 100, what: `${url}/readyz to answer 200 (IdP discovery loaded)`,
      });
    },
    /** Rewrites the config with OVER applied, sends SIGHUP and waits for the reload line. */
    async reload(over = {}) {
      const before = s.gw.logs().filter((l) => l.msg === 'configuration reloaded').length;
      s.gw.writeConfig(s.config(over));
      s.gw.reload();
      await waitFor(() => s.gw.logs().filter((l) => l.msg === 'configuration reloaded').length > before, {
        timeoutMs: 5000, what: 'the gateway to log "configuration reloaded"',
      });
    },
    /** Starts a new gateway after the current one died (or stops it first, ignoring its report). */
    async respawn() {
      await s.gw.stop('SIGKILL').catch(() => {});
      await s.start();
    },
    /** Stops the gateway (SIGTERM; returns its exit status) and starts it again with OVER. */
    async restart(over = {}) {
      const rc = await s.gw.stop();
      s.config(over);
      await s.start();
      return rc;
    },
  };
  await s.start();
  return s;
}

// ---- tokens through the real flow ----------------------------------------------------------------

/** DCR of a public client (token_endpoint_auth_method none); returns the registration. */
export async function registerPublicClient(base, { redirectUri, refresh = true, name = 'identity-policy e2e' } = {}) {
  redirectUri = redirectUri || `http://127.0.0.1:${await freePort()}/callback`;
  const r = await fetch(`${base}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({
      client_name: name,
      redirect_uris: [redirectUri],
      grant_types: refresh ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
    signal: AbortSignal.timeout(10000),
  });
  const text = await r.text();
  if (r.status !== 201) throw new Error(`registration: ${r.status} ${text}`);
  return JSON.parse(text);
}

/**
 * The whole flow for USER: (DCR unless CLIENT is given) → /authorize (PKCE S256, SCOPE,
 * RESOURCE) → consent approve → IdP login → code → /token. Returns {client, tokens, jar}.
 */
export async function obtainToken(base, { user, resource, scope = 'mcp:tools', client, jar = new CookieJar(), refresh = true }) {
  client = client || (await registerPublicClient(base, { refresh }));
  const pkce = makePkce();
  const state = randomBytes(12).toString('base64url');
  const az = new URL(`${base}/authorize`);
  const params = {
    response_type: 'code', client_id: client.client_id, redirect_uri: client.redirect_uris[0],
    code_challenge: pkce.challenge, code_challenge_method: 'S256', state, scope, resource,
  };
  for (const [k, v] of Object.entries(params)) if (v !== undefined) az.searchParams.set(k, v);
  const cb = new URL(await loginViaForm({
    authorizeUrl: az.href, username: user, password: USERS[user].password, jar, forms: [consentRule(base)],
  }));
  if (cb.searchParams.get('state') !== state) throw new Error(`state mismatch at ${cb.href}`);
  const code = cb.searchParams.get('code');
  if (!code) throw new Error(`no code: ${cb.href}`);
  const body = new URLSearchParams({
    grant_type: 'authorization_code', code, code_verifier: pkce.verifier,
    redirect_uri: client.redirect_uris[0], client_id: client.client_id,
  });
  if (resource) body.set('resource', resource);
  const r = await fetch(`${base}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: body.toString(),
    signal: AbortSignal.timeout(10000),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`/token: ${r.status} ${text}`);
  return { client, tokens: JSON.parse(text), jar };
}

// ---- an OAuthClientProvider for the SDK ----------------------------------------------------------

/**
 * The SDK provider of tests/lib/oauth.mjs for a client registered already, logging in as one of
 * the IdP's users; a refused authorization or a state that does not match throws, and the code
 * of the last callback is in lastCode.
 */
export class FlowProvider extends MemoryOAuthProvider {
  constructor({ base, client, tokens, user, jar = new CookieJar() }) {
    super({ base, client, tokens, user, password: USERS[user].password, jar });
  }

  async redirectToAuthorization(url) {
    await super.redirectToAuthorization(url);
    const cb = this.lastCallback;
    if (cb.searchParams.get('error')) throw new Error(`authorization refused: ${cb.href}`);
    if (cb.searchParams.get('state') !== this.states.at(-1)) throw new Error(`state mismatch at ${cb.href}`);
  }

  get lastCode() {
    return this.lastCallback?.searchParams.get('code') ?? undefined;
  }
}

// ---- the SDK client ------------------------------------------------------------------------------

/**
 * Connects the SDK Client to URL. TOKEN as Authorization (requestInit), or AUTHPROVIDER.
 * HEADERS: extra request headers. Returns {client, transport, log (recordingFetch), close()}.
 */
export async function connect(url, { token, headers = {}, authProvider, name = 'identity-policy-e2e', timeoutMs = 15000 } = {}) {
  const log = [];
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: h },
    authProvider,
    fetch: recordingFetch(log),
  });
  const client = new Client({ name, version: '1.0.0' });
  await withTimeout(client.connect(transport), timeoutMs, `MCP connect to ${url}`);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await withTimeout(transport.terminateSession().catch(() => {}), 5000, 'DELETE session').catch(() => {});
    await client.close().catch(() => {});
  };
  stoppers.add(close);
  return { client, transport, log, close };
}

// ---- raw MCP POSTs ---------------------------------------------------------------------------------

/**
 * One POST of MESSAGE (an object) to URL with TOKEN and SESSIONID. Reads a JSON answer or an SSE
 * stream (until it ends or a response to MESSAGE.id arrived). Returns
 * {status, headers, text, messages (parsed JSON-RPC messages), response (the one with MESSAGE.id)}.
 */
export async function mcpPost(url, message, { token, sessionId, protocolVersion = '2025-11-25', headers = {}, timeoutMs = 15000 } = {}) {
  const h = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (sessionId) h['mcp-session-id'] = sessionId;
  if (protocolVersion) h['mcp-protocol-version'] = protocolVersion;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const res = await fetch(url, { method: 'POST', headers: h, body: JSON.stringify(message), signal: ac.signal });
    const ctype = res.headers.get('content-type') || '';
    let text = '';
    const messages = [];
    if (ctype.startsWith('text/event-stream')) {
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const chunk = dec.decode(value, { stream: true });
        text += chunk;
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = ev.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
          if (data) messages.push(JSON.parse(data));
        }
        if (message.id !== undefined && messages.some((m) => m.id === message.id && !m.method)) break;
      }
      reader.cancel().catch(() => {});
    } else {
      text = await res.text();
      if (ctype.startsWith('application/json') && text) {
        const j = JSON.parse(text);
        messages.push(...(Array.isArray(j) ? j : [j]));
      }
    }
    const response = messages.find((m) => !m.method && (message.id === undefined || m.id === message.id || m.id === null));
    return { status: res.status, headers: res.headers, text, messages, response };
  } finally {
    clearTimeout(timer);
  }
}

let nextId = 1000;
export const rpc = (method, params = {}) => ({ jsonrpc: '2.0', id: nextId++, method, params });

/** initialize + notifications/initialized over raw POSTs; returns the session id. */
export async function rawSession(url, token, opts = {}) {
  const init = await mcpPost(url, rpc('initialize', {
    protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw-e2e', version: '1' },
  }), { token, ...opts });
  if (init.status !== 200) throw new Error(`initialize: ${init.status} ${init.text}`);
  const sid = init.headers.get('mcp-session-id');
  const n = await mcpPost(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, { token, sessionId: sid, ...opts });
  if (n.status !== 202) throw new Error(`notifications/initialized: ${n.status} ${n.text}`);
  return sid;
}

/** The JSON object of a tool result's first text block. */
export function firstTextJson(result) {
  const t = result?.content?.find((c) => c.type === 'text')?.text;
  return t === undefined ? undefined : JSON.parse(t);
}
