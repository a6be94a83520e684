// OAuth helpers for black-box tests of mcpgate's authorization server: the
// whole stack (a real redis-server, the test IdP of tests/idp, the gateway
// under ASan with an OAuth config), and small clients for /register,
// /authorize, /token, /revoke and the bearer-protected routes.
//
//   import { startOAuthStack, registerClient, login, tokenRequest } from '../lib/oauth.mjs';
//   const s = await startOAuthStack();              // redis + IdP + gateway
//   const c = await registerClient(s.url, { redirect_uris: [cb] });
//   const { params, pkce } = await login(s, { client: c.body });
//   const t = await tokenRequest(s.url, { grant_type: 'authorization_code', ... }, c.body);
//
// Everything listens on 127.0.0.1; every process started here is stopped by a
// root after() hook (the harness's for redis and the gateway, ours for IdPs),
// also when a test fails.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after } from 'node:test';

import {
  CookieJar, FlowError, basicAuth, followFlow, loginViaForm, makePkce, request as browserRequest,
} from '../idp/browserless.mjs';
import { startIdpProcess } from '../idp/launch.mjs';
import { REPO, freePort, startGateway, startRedis, waitFor, writeSecret } from './harness.mjs';

export { CookieJar, FlowError, basicAuth, makePkce };

export const IDP_CLIENT_ID = 'mcpgate-demo';
export const IDP_CLIENT_SECRET = 'mcpgate-demo-secret';
const usersFile = JSON.parse(fs.readFileSync(path.join(REPO, 'tests', 'idp', 'users.json'), 'utf8'));
/** The test IdP's users by username: {sub, password, roles, groups, email, ...}. */
export const USERS = Object.fromEntries(usersFile.users.map((u) => [u.username, u]));
const BUILD_DIR = process.env.MCPGATE_BUILD || path.join(REPO, 'build');
/** The example STDIO server behind the routes: $WHOAMI_BIN, else the release build, else the ASan one. */
export const WHOAMI_BIN = process.env.WHOAMI_BIN
  || [path.join(BUILD_DIR, 'rel', 'examples', 'whoami-server'), path.join(BUILD_DIR, 'san', 'examples', 'whoami-server')]
    .find((p) => fs.existsSync(p))
  || path.join(BUILD_DIR, 'rel', 'examples', 'whoami-server');
export const DEFAULT_SCOPES = { 'mcp:tools': 'Use the tools of the MCP servers behind this gateway' };
/** Two bearer-protected routes, A (/mcp/whoami) and B (/mcp/other), both served by the whoami example server. */
export const DEFAULT_ROUTES = [
  { name: 'whoami', path: '/mcp/whoami', description: 'Shows who mcpgate says you are', stdio: { command: [WHOAMI_BIN] } },
  { name: 'other', path: '/mcp/other', stdio: { command: [WHOAMI_BIN] } },
];
/** Strings that must never appear in the gateway's log. */
export const SECRET_MARKERS = ['mcpgate_at_', 'mcpgate_rt_', 'mcpgate_ac_', IDP_CLIENT_SECRET, ...Object.values(USERS).map((u) => u.password)];

// ---- process lifetimes ------------------------------------------------------------

const idps = new Set();
after(async () => {
  for (const idp of [...idps]) {
    idps.delete(idp);
    await idp.stop().catch(() => {});
  }
});

/** The test IdP, redirecting to <gatewayUrl>/callback; stopped at teardown. */
export async function startIdp({ gatewayUrl, testKnobs = true, args = [] } = {}) {
  const argv = ['--redirect-uri', `${gatewayUrl}/callback`, ...(testKnobs ? ['--test-knobs'] : []), ...args];
  const idp = await startIdpProcess({ args: argv });
  idps.add(idp);
  const stop = idp.stop;
  idp.stop = async (...a) => {
    idps.delete(idp);
    return stop(...a);
  };
  return idp;
}

// ---- configuration ------------------------------------------------------------------

/**
 * A gateway configuration with OAuth (JSON text, which is YAML flow style).
 *   port, redisUrl, issuer      required
 *   prefix                      redis key prefix (default: a random one, so gateways can share a redis)
 *   secretFile                  oauth.secret_file (default: 48 random bytes, base64)
 *   oauth                       merged over the default oauth section
 *   routes                      default DEFAULT_ROUTES
 *   server                      merged over the server section
 *   idp                         merged over the idp section
 */
export function oauthGatewayConfig({ port, redisUrl, issuer, prefix, secretFile, oauth = {}, routes = DEFAULT_ROUTES, server = {}, idp = {}, log = { level: 'info' } }) {
  const cfg = {
    server: { listen: [`127.0.0.1:${port}`], public_url: `http://127.0.0.1:${port}`, ...server },
    store: { backend: 'redis', redis: { url: redisUrl, prefix: prefix ?? `t${randomBytes(4).toString('hex')}:`, timeout: '1s' } },
    idp: {
      preset: 'oidc', issuer, client_id: IDP_CLIENT_ID, client_secret: IDP_CLIENT_SECRET,
      scopes: ['openid', 'profile', 'email', 'roles'], timeout: '3s', ...idp,
    },
    oauth: {
      secret_file: secretFile ?? writeSecret(Buffer.from(randomBytes(48).toString('base64'))),
      scopes: DEFAULT_SCOPES,
      ...oauth,
    },
    routes,
    log,
  };
  return `${JSON.stringify(cfg, null, 2)}\n`;
}

/**
 * Starts what a test needs: redis (or the one given), the IdP (or the one
 * given, or none with idp:false and a dead issuer), and the gateway. Waits
 * for /readyz 200 unless waitReady is false.
 * Returns {redis, idp, gw, url, port, issuer, routeUrl(path)}.
 */
export async function startOAuthStack({ redis, idp, issuer, oauth, routes, server, idpConfig, testKnobs = true, waitReady = true, prefix, log } = {}) {
  redis = redis || (await startRedis());
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  if (idp === undefined) idp = await startIdp({ gatewayUrl: url, testKnobs });
  const iss = issuer || idp?.issuer;
  if (!iss) throw new Error('startOAuthStack: no IdP and no issuer');
  const gw = await startGateway({
    port,
    config: oauthGatewayConfig({ port, redisUrl: redis.url, issuer: iss, oauth, routes, server, idp: idpConfig, prefix, log }),
  });
  if (waitReady) {
    await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, {
      timeoutMs: 10000, intervalMs: 100, what: `${url}/readyz to answer 200 (IdP discovery loaded)`,
    });
  }
  return { redis, idp, gw, url, port, issuer: iss, routeUrl: (p = '/mcp/whoami') => `${url}${p}` };
}

// ---- HTTP ----------------------------------------------------------------------------

/**
 * One request (fetch, no redirects followed, cookies from/to JAR when given):
 * {status, headers (Headers), location, text, json (parsed or undefined)}.
 */
export async function http(url, { method = 'GET', headers = {}, body, jar, timeoutMs = 10000 } = {}) {
  const res = await browserRequest(url, { jar, method, headers, body, timeoutMs });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, location: res.headers.get('location'), text, json };
}

export const form = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v !== undefined)).toString();

/** POST /register with a JSON body (or BODY text as is). */
export function registerClient(base, metadata, { contentType = 'application/json', body, headers = {} } = {}) {
  return http(`${base}/register`, {
    method: 'POST',
    headers: { 'content-type': contentType, accept: 'application/json', ...headers },
    body: body ?? JSON.stringify(metadata),
  });
}

/** Client metadata for a loopback redirect URI. */
export function clientMetadata({ redirectUri, name = 'Test Client', auth = 'none', refresh = true, ...more } = {}) {
  return {
    client_name: name,
    redirect_uris: [redirectUri],
    grant_types: refresh ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: auth,
    ...more,
  };
}

/** Registers a client and returns the registration response (throws unless 201). */
export async function newClient(base, opts = {}) {
  const redirectUri = opts.redirectUri || `http://127.0.0.1:${opts.redirectPort || 9}/cb`;
  const r = await registerClient(base, clientMetadata({ ...opts, redirectUri }));
  if (r.status !== 201) throw new Error(`registration failed: ${r.status} ${r.text}`);
  return r.json;
}

/** The /authorize URL for CLIENT (undefined values are left out; pass null to drop a default). */
export function authorizeUrl(base, client, { pkce, state, scope, resource, prompt, redirectUri, responseType = 'code', method = 'S256', extra = {} } = {}) {
  const u = new URL(`${base}/authorize`);
  const p = {
    response_type: responseType,
    client_id: client.client_id,
    redirect_uri: redirectUri === undefined ? client.redirect_uris[0] : redirectUri,
    code_challenge: pkce === null ? undefined : (pkce || makePkce()).challenge,
    code_challenge_method: method,
    state,
    scope,
    resource,
    prompt,
    ...extra,
  };
  for (const [k, v] of Object.entries(p)) if (v !== undefined && v !== null) u.searchParams.set(k, v);
  return u.href;
}

/** A followFlow rule that presses BUTTON ('approve' or 'deny') on mcpgate's consent page. */
export const consentRule = (base, button = 'approve') => ({
  match: (f) => f.action === `${base}/authorize` && f.buttons.some((b) => b.value === 'approve'),
  button,
});

/**
 * Runs the browser part of an authorization: mcpgate's consent page (BUTTON),
 * the IdP login as USER, back through /callback to the client's redirect URI.
 * Returns {url, params (URLSearchParams of the final redirect), pkce, state, steps, jar}.
 * stopAt: 'client' (default) or 'callback' (stop before the gateway's /callback).
 */
export async function login(stack, { client, user = 'alice', jar = new CookieJar(), pkce = makePkce(), state = randomBytes(12).toString('base64url'), scope, resource, prompt, button = 'approve', stopAt = 'client', redirectUri } = {}) {
  const base = stack.url;
  const start = authorizeUrl(base, client, { pkce, state, scope, resource, prompt, redirectUri });
  const target = stopAt === 'callback' ? `${base}/callback` : (redirectUri || client.redirect_uris[0]);
  const r = await followFlow(start, {
    jar,
    username: user,
    password: USERS[user]?.password,
    forms: [consentRule(base, button)],
    stopAt: target,
  });
  if (!r.done) {
    throw new FlowError(`authorization flow stopped at ${r.url} (HTTP ${r.status}): ${(r.html || '').replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').slice(0, 300)}`, r);
  }
  return { url: r.url, params: new URL(r.url).searchParams, pkce, state, steps: r.steps, jar };
}

/** Client authentication for CLIENT (a registration response) as it registered. */
export function clientAuth(client, { method } = {}) {
  const m = method || client.token_endpoint_auth_method || 'client_secret_basic';
  if (m === 'none') return { headers: {}, fields: { client_id: client.client_id } };
  if (m === 'client_secret_post') return { headers: {}, fields: { client_id: client.client_id, client_secret: client.client_secret } };
  return { headers: { authorization: basicAuth(client.client_id, client.client_secret) }, fields: {} };
}

/** POST /token (or PATH) with FIELDS and CLIENT's authentication. */
export function tokenRequest(base, fields, client, { path: p = '/token', auth, headers = {}, contentType = 'application/x-www-form-urlencoded' } = {}) {
  const a = auth || (client ? clientAuth(client) : { headers: {}, fields: {} });
  return http(`${base}${p}`, {
    method: 'POST',
    headers: { 'content-type': contentType, accept: 'application/json', ...a.headers, ...headers },
    body: form({ ...a.fields, ...fields }),
  });
}

/** Exchanges the code of a login() result; returns the /token response. */
export function exchangeCode(base, client, flow, extra = {}) {
  return tokenRequest(base, {
    grant_type: 'authorization_code',
    code: flow.params.get('code'),
    code_verifier: flow.pkce.verifier,
    redirect_uri: client.redirect_uris[0],
    ...extra,
  }, client);
}

export function refresh(base, client, refreshToken, extra = {}) {
  return tokenRequest(base, { grant_type: 'refresh_token', refresh_token: refreshToken, ...extra }, client);
}

export function revoke(base, client, token, extra = {}) {
  return tokenRequest(base, { token, ...extra }, client, { path: '/revoke' });
}

/** Registers a client, logs in and exchanges the code: {client, flow, tokens}. */
export async function obtainTokens(stack, { clientOpts = {}, ...loginOpts } = {}) {
  const client = loginOpts.client || (await newClient(stack.url, clientOpts));
  const flow = await login(stack, { ...loginOpts, client });
  if (!flow.params.get('code')) throw new Error(`no code in ${flow.url}`);
  const t = await exchangeCode(stack.url, client, flow);
  if (t.status !== 200) throw new Error(`code exchange failed: ${t.status} ${t.text}`);
  return { client, flow, tokens: t.json };
}

// ---- the protected routes ------------------------------------------------------------

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'mcpgate-e2e', version: '1' } },
});

/**
 * POSTs an MCP initialize to ROUTE (a path) with TOKEN as bearer (none when
 * null). query: appended to the URL. Returns the response plus
 * `challenge`, the parsed WWW-Authenticate ({scheme, params}) or null.
 */
export async function callRoute(base, route, token, { query, headers = {}, timeoutMs = 10000 } = {}) {
  const h = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  const res = await fetch(`${base}${route}${query ? `?${query}` : ''}`, {
    method: 'POST', headers: h, body: INITIALIZE, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs),
  });
  // An SSE answer may stay open: read only what is there within a moment.
  let text = '';
  if (/text\/event-stream/.test(res.headers.get('content-type') || '')) {
    const reader = res.body.getReader();
    const t = setTimeout(() => reader.cancel().catch(() => {}), 1000);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
        if (text.includes('\n\n')) break;
      }
    } catch {
      /* cancelled */
    }
    clearTimeout(t);
    reader.cancel().catch(() => {});
  } else {
    text = await res.text();
  }
  const www = res.headers.get('www-authenticate');
  return { status: res.status, headers: res.headers, text, www, challenge: www ? parseChallenge(www) : null };
}

// ---- the MCP SDK client's side ------------------------------------------------------

/**
 * An OAuthClientProvider for the MCP TypeScript SDK that keeps everything in memory. Its
 * "browser" (redirectToAuthorization) is the browserless client: mcpgate's consent page
 * (approve), the IdP login as USER with PASSWORD, back to the redirect URI; each final
 * redirect is kept in callbacks. CLIENT is a registration made already (then the redirect
 * URI and metadata are its own), or the SDK registers one from METADATA and REDIRECTURL.
 */
export class MemoryOAuthProvider {
  constructor({ base, user = 'alice', password = USERS[user]?.password, jar = new CookieJar(), client, tokens, redirectUrl, metadata }) {
    this.base = base;
    this.user = user;
    this.password = password;
    this.jar = jar;
    this.client = client;
    this._redirectUrl = redirectUrl;
    this._metadata = metadata;
    this._tokens = tokens;
    this.savedClients = [];
    this.tokenHistory = tokens ? [tokens] : [];
    this.verifier = undefined;
    this.states = [];
    this.authorizationUrls = [];
    this.callbacks = [];
  }

  get redirectUrl() {
    return this._redirectUrl ?? this.client.redirect_uris[0];
  }

  get clientMetadata() {
    return this._metadata ?? {
      client_name: this.client.client_name,
      redirect_uris: this.client.redirect_uris,
      grant_types: this.client.grant_types,
      response_types: ['code'],
      token_endpoint_auth_method: this.client.token_endpoint_auth_method ?? 'none',
    };
  }

  state() {
    const s = randomBytes(16).toString('base64url');
    this.states.push(s);
    return s;
  }

  clientInformation() {
    return this.client;
  }

  saveClientInformation(info) {
    this.client = info;
    this.savedClients.push(info);
  }

  tokens() {
    return this._tokens;
  }

  saveTokens(tokens) {
    this._tokens = tokens;
    this.tokenHistory.push(tokens);
  }

  saveCodeVerifier(v) {
    this.verifier = v;
  }

  codeVerifier() {
    return this.verifier;
  }

  async redirectToAuthorization(url) {
    this.authorizationUrls.push(new URL(url.href));
    const callback = await loginViaForm({
      authorizeUrl: url.href,
      username: this.user,
      password: this.password,
      jar: this.jar,
      forms: [consentRule(this.base)],
      redirectUri: this.redirectUrl,
    });
    this.callbacks.push(new URL(callback));
  }

  get lastCallback() {
    return this.callbacks.at(-1);
  }
}

/**
 * A fetch that records every exchange in LOG: {method, url, requestHeaders, requestBody,
 * status, headers, bodyText (error responses only)}.
 */
export function recordingFetch(log) {
  return async (url, init = {}) => {
    const res = await fetch(url, init);
    const entry = {
      method: (init.method || 'GET').toUpperCase(),
      url: String(url),
      requestHeaders: new Headers(init.headers || {}),
      requestBody: typeof init.body === 'string' ? init.body
        : init.body instanceof URLSearchParams ? init.body.toString() : undefined,
      status: res.status,
      headers: res.headers,
    };
    if (!res.ok) {
      // keep the body of errors (the SDK reads it too: hand it a copy)
      entry.bodyText = await res.clone().text().catch(() => undefined);
    }
    log.push(entry);
    return res;
  };
}

/** Parses `Bearer a="b", c="d"` into {scheme, params}. */
export function parseChallenge(header) {
  const m = /^\s*([A-Za-z]+)\s*(.*)$/.exec(header || '');
  if (!m) return null;
  const params = {};
  const re = /([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g;
  let p;
  while ((p = re.exec(m[2]))) params[p[1]] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  return { scheme: m[1], params };
}

/** Waits (bounded) until TOKEN gets 401 invalid_token on ROUTE; returns that response. */
export async function waitRefused(base, route, token, timeoutMs = 3000) {
  let last;
  try {
    await waitFor(async () => {
      last = await callRoute(base, route, token);
      return last.status === 401 && last.challenge?.params.error === 'invalid_token';
    }, { timeoutMs, intervalMs: 100, what: `${route} to refuse the token` });
  } catch {
    /* the caller's assertion reports LAST */
  }
  return last;
}

/** Throws when the gateway's log holds a token, a code or a password. */
export function assertNoSecretsInLog(text, extra = []) {
  for (const s of [...SECRET_MARKERS, ...extra]) {
    const i = text.indexOf(s);
    if (i >= 0) {
      throw new Error(`the gateway log contains a secret (${s.slice(0, 12)}…):\n${text.slice(Math.max(0, i - 300), i + 200)}`);
    }
  }
}
