#!/usr/bin/env node
// A local OpenID provider for mcpgate's tests and `make demo`, shaped like Asgardeo.
//
//   node tests/idp/server.mjs --port 9443 [--org demo] [--users tests/idp/users.json]
//        [--client-id ID --client-secret S --redirect-uri URI ...] [--test-knobs]
//
// Issuer http://127.0.0.1:<port>/t/<org>/oauth2/token (the token endpoint URL, as on Asgardeo);
// everything else is described in tests/idp/README.md. Built on oidc-provider v9.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SCOPES = ['openid', 'profile', 'email', 'roles', 'groups', 'offline_access'];
const BODY_LIMIT = 64 * 1024;

// oidc-provider v9 prints a one-line "Unsupported runtime" warning on Node < 22 at import time.
// Node 20 (the machine's) has every API it uses (crypto.hash, URL.parse), so drop that one line.
async function loadProvider() {
  const warn = console.warn;
  console.warn = (...args) => {
    if (typeof args[0] === 'string' && args[0].includes('Unsupported runtime')) return;
    warn(...args);
  };
  try {
    return (await import('oidc-provider')).default;
  } finally {
    console.warn = warn;
  }
}

// ---------------------------------------------------------------------------------------------
// options

function envList(v) {
  return v ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
}

function envBool(v) {
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

export function parseOptions(argv = process.argv.slice(2), env = process.env) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      org: { type: 'string' },
      users: { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'redirect-uri': { type: 'string', multiple: true },
      'post-logout-redirect-uri': { type: 'string', multiple: true },
      'roles-only-in-userinfo': { type: 'boolean' },
      'test-knobs': { type: 'boolean' },
      'key-file': { type: 'string' },
      'token-ttl': { type: 'string' },
      verbose: { type: 'boolean' },
      'exit-on-stdin-close': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const redirectUris = values['redirect-uri'] ?? envList(env.IDP_REDIRECT_URIS)
    ?? ['http://127.0.0.1:8080/callback'];
  const opts = {
    help: !!values.help,
    port: Number(values.port ?? env.IDP_PORT ?? 9443),
    host: values.host ?? env.IDP_HOST ?? '127.0.0.1',
    org: values.org ?? env.IDP_ORG ?? 'demo',
    usersFile: values.users ?? env.IDP_USERS ?? path.join(HERE, 'users.json'),
    clientId: values['client-id'] ?? env.IDP_CLIENT_ID ?? 'mcpgate-demo',
    clientSecret: values['client-secret'] ?? env.IDP_CLIENT_SECRET ?? 'mcpgate-demo-secret',
    redirectUris,
    postLogoutRedirectUris: values['post-logout-redirect-uri']
      ?? envList(env.IDP_POST_LOGOUT_REDIRECT_URIS)
      ?? [...new Set(redirectUris.map((u) => `${new URL(u).origin}/`))],
    rolesOnlyInUserinfo: values['roles-only-in-userinfo'] ?? envBool(env.IDP_ROLES_ONLY_IN_USERINFO),
    testKnobs: values['test-knobs'] ?? envBool(env.IDP_TEST_KNOBS),
    keyFile: values['key-file'] ?? env.IDP_KEY_FILE,
    tokenTtl: Number(values['token-ttl'] ?? env.IDP_TOKEN_TTL ?? 3600),
    verbose: values.verbose ?? envBool(env.IDP_VERBOSE),
    exitOnStdinClose: values['exit-on-stdin-close'] ?? envBool(env.IDP_EXIT_ON_STDIN_CLOSE),
  };
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new Error(`invalid --port ${values.port ?? env.IDP_PORT}`);
  }
  if (!/^[A-Za-z0-9._-]+$/.test(opts.org)) throw new Error(`invalid --org ${opts.org}`);
  if (!Number.isInteger(opts.tokenTtl) || opts.tokenTtl < 1) throw new Error('invalid --token-ttl');
  if (opts.host !== '127.0.0.1' && opts.host !== '::1' && opts.host !== 'localhost') {
    throw new Error('the test IdP listens on loopback only');
  }
  return opts;
}

const USAGE = `usage: node tests/idp/server.mjs [options]
  --port P                      listen port on 127.0.0.1 (env IDP_PORT; default 9443; 0 = pick a free one)
  --org NAME                    organization, as in /t/<org>/ (env IDP_ORG; default demo)
  --users FILE                  users JSON (env IDP_USERS; default tests/idp/users.json)
  --client-id ID                static client id (env IDP_CLIENT_ID; default mcpgate-demo)
  --client-secret S             its secret (env IDP_CLIENT_SECRET; default mcpgate-demo-secret)
  --redirect-uri URI            repeatable (env IDP_REDIRECT_URIS, comma-separated;
                                default http://127.0.0.1:8080/callback)
  --post-logout-redirect-uri U  repeatable (env IDP_POST_LOGOUT_REDIRECT_URIS; default: the
                                origin of each redirect URI followed by "/")
  --roles-only-in-userinfo      keep roles/groups out of the ID token (env IDP_ROLES_ONLY_IN_USERINFO=1)
  --test-knobs                  enable POST /__test/* (env IDP_TEST_KNOBS=1)
  --key-file FILE               keep the RS256 signing key in FILE (created on first run);
                                default: a fresh key at every start (env IDP_KEY_FILE)
  --token-ttl SECONDS           access and ID token lifetime (env IDP_TOKEN_TTL; default 3600)
  --verbose                     log each request to stderr (env IDP_VERBOSE=1)
  --exit-on-stdin-close         exit when stdin reaches EOF, i.e. when the parent that holds the
                                pipe dies (env IDP_EXIT_ON_STDIN_CLOSE=1; launch.mjs uses it)
Prints "idp ready <issuer>" on stdout once listening; exits on SIGTERM/SIGINT.`;

// ---------------------------------------------------------------------------------------------
// users

function loadUsers(file) {
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  const list = Array.isArray(doc) ? doc : doc.users;
  if (!Array.isArray(list)) throw new Error(`${file}: expected {"users": [...]}`);
  const bySub = new Map();
  const byName = new Map();
  for (const u of list) {
    for (const k of ['sub', 'username', 'password']) {
      if (typeof u[k] !== 'string' || !u[k]) throw new Error(`${file}: user without ${k}`);
    }
    const user = {
      email_verified: true, roles: [], groups: [], ...structuredClone(u),
    };
    bySub.set(user.sub, user);
    byName.set(user.username, user);
  }
  return { bySub, byName };
}

// ---------------------------------------------------------------------------------------------
// signing key

function rsaThumbprint(jwk) {
  // RFC 7638: members e, kty, n in lexicographic order, no whitespace
  return crypto.createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
    .digest('base64url');
}

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: rsaThumbprint(jwk), alg: 'RS256', use: 'sig' };
}

function signingKey(keyFile) {
  if (!keyFile) return newSigningKey();
  if (fs.existsSync(keyFile)) return JSON.parse(fs.readFileSync(keyFile, 'utf8'));
  const jwk = newSigningKey();
  fs.mkdirSync(path.dirname(keyFile), { recursive: true });
  fs.writeFileSync(keyFile, `${JSON.stringify(jwk)}\n`, { mode: 0o600 });
  return jwk;
}

// ---------------------------------------------------------------------------------------------
// storage: a plain in-memory adapter, one store per provider instance (so /__test/reset, which
// builds a new provider, drops every session, code and token)

function memoryAdapterFactory() {
  const store = new Map(); // key -> { payload, exp (ms or Infinity) }
  const grants = new Map(); // grantId -> Set of keys
  const uids = new Map(); // session uid -> session id
  const userCodes = new Map();
  let ops = 0;
  const alive = (e) => e && e.exp > Date.now();
  function sweep() {
    const now = Date.now();
    for (const [k, e] of store) if (e.exp <= now) store.delete(k);
  }
  return class MemoryAdapter {
    constructor(model) { this.model = model; }

    key(id) { return `${this.model}:${id}`; }

    async upsert(id, payload, expiresIn) {
      ops += 1;
      if (ops % 500 === 0) sweep();
      const key = this.key(id);
      store.set(key, {
        payload: structuredClone(payload),
        exp: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity,
      });
      if (payload.grantId) {
        if (!grants.has(payload.grantId)) grants.set(payload.grantId, new Set());
        grants.get(payload.grantId).add(key);
      }
      if (this.model === 'Session' && payload.uid) uids.set(payload.uid, id);
      if (payload.userCode) userCodes.set(payload.userCode, id);
    }

    async find(id) {
      const e = store.get(this.key(id));
      return alive(e) ? structuredClone(e.payload) : undefined;
    }

    async findByUid(uid) { return uids.has(uid) ? this.find(uids.get(uid)) : undefined; }

    async findByUserCode(code) { return userCodes.has(code) ? this.find(userCodes.get(code)) : undefined; }

    async consume(id) {
      const e = store.get(this.key(id));
      if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id) { store.delete(this.key(id)); }

    async revokeByGrantId(grantId) {
      for (const key of grants.get(grantId) ?? []) store.delete(key);
      grants.delete(grantId);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// HTML

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;max-width:22em;margin:3em auto}label,input,button{display:block;width:100%;margin:.3em 0}
input{padding:.4em;box-sizing:border-box}button{padding:.5em}.error{color:#b00020}.muted{color:#666;font-size:.9em}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

function loginPage({
  action, abortAction, clientName, error, username,
}) {
  return page('Sign In - test IdP', `<h1>Sign In</h1>
<p class="muted">Test identity provider (Asgardeo-shaped) for ${esc(clientName)}</p>
${error ? `<p class="error" id="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="${esc(action)}" id="login-form">
<label for="username">Username</label>
<input type="text" id="username" name="username" value="${esc(username)}" autocomplete="username" autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password">
<button type="submit" id="sign-in" name="sign-in" value="1">Sign In</button>
</form>
<form method="post" action="${esc(abortAction)}" id="cancel-form">
<button type="submit" id="cancel" name="cancel" value="1">Cancel</button>
</form>`);
}

// ---------------------------------------------------------------------------------------------
// small HTTP helpers

function readBody(req, limit = BODY_LIMIT) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(Object.assign(new Error('body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, body, type = 'text/plain; charset=utf-8', headers = {}) {
  res.writeHead(status, {
    'Content-Type': type,
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function sendJson(res, status, obj, headers) {
  send(res, status, JSON.stringify(obj), 'application/json; charset=utf-8', headers);
}

// ---------------------------------------------------------------------------------------------
// the server

export async function startIdp(options) {
  const opts = { ...parseOptions([], {}), ...options };
  const Provider = await loadProvider();

  let users = loadUsers(opts.usersFile);
  const knobs = { failToken: [], tokenPosts: 0 };
  const log = opts.verbose ? (...a) => console.error('[idp]', ...a) : () => {};

  const prefix = `/t/${opts.org}`;
  const loginBase = `${prefix}/authenticationendpoint/login`;
  const discoveryPaths = new Set([
    `${prefix}/oauth2/token/.well-known/openid-configuration`,
    `${prefix}/oauth2/oidcdiscovery/.well-known/openid-configuration`,
  ]);

  let provider;
  let handle;

  async function onRequest(req, res) {
    const url = new URL(req.url, 'http://127.0.0.1');
    const p = url.pathname;
    log(req.method, req.url);

    if (opts.testKnobs && p.startsWith('/__test/')) return testKnob(req, res, p);

    if (p === `${prefix}/oauth2/token` && req.method === 'POST') knobs.tokenPosts += 1;
    if (p === `${prefix}/oauth2/token` && req.method === 'POST' && knobs.failToken.length) {
      const f = knobs.failToken.shift();
      await readBody(req).catch(() => '');
      const body = { error: f.error };
      if (f.error_description) body.error_description = f.error_description;
      return sendJson(res, f.status, body, { Pragma: 'no-cache' });
    }

    if (p === loginBase || p.startsWith(`${loginBase}/`)) return loginRoute(req, res, p);

    if (discoveryPaths.has(p)) {
      // served by oidc-provider's own discovery route, mounted as if under /t/<org>
      req.originalUrl = `${prefix}/.well-known/openid-configuration${url.search}`;
      req.url = `/.well-known/openid-configuration${url.search}`;
      return handle(req, res);
    }

    if (p.startsWith(`${prefix}/`) && !p.startsWith(`${prefix}/.well-known/`)) {
      req.originalUrl = req.url;
      req.url = req.url.slice(prefix.length);
      return handle(req, res);
    }

    return send(res, 404, 'not found\n');
  }

  async function testKnob(req, res, p) {
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'use POST' });
    let body = {};
    try {
      const raw = await readBody(req);
      if (raw.trim()) body = JSON.parse(raw);
    } catch {
      return sendJson(res, 400, { error: 'body must be JSON' });
    }
    if (p === '/__test/fail-next-token') {
      const status = Number(body.status ?? 500);
      const error = body.error ?? (status >= 500 ? 'server_error' : 'invalid_grant');
      const count = Number(body.count ?? 1);
      for (let i = 0; i < count; i += 1) {
        knobs.failToken.push({ status, error, error_description: body.error_description });
      }
      return sendJson(res, 200, { ok: true, pending: knobs.failToken.length });
    }
    if (p === '/__test/stats') return sendJson(res, 200, { tokenPosts: knobs.tokenPosts });
    if (p === '/__test/reset') {
      knobs.failToken = [];
      knobs.tokenPosts = 0;
      users = loadUsers(opts.usersFile);
      await resetProvider();
      return sendJson(res, 200, { ok: true });
    }
    const m = /^\/__test\/users\/([^/]+)$/.exec(p);
    if (m) {
      const user = users.byName.get(decodeURIComponent(m[1]));
      if (!user) return sendJson(res, 404, { error: 'no such user' });
      for (const k of ['roles', 'groups']) {
        if (body[k] !== undefined) {
          if (!Array.isArray(body[k]) || !body[k].every((s) => typeof s === 'string')) {
            return sendJson(res, 400, { error: `${k} must be an array of strings` });
          }
          user[k] = [...body[k]];
        }
      }
      for (const k of ['email', 'name', 'given_name', 'family_name', 'password']) {
        if (typeof body[k] === 'string') user[k] = body[k];
      }
      // A disabled user is unknown to findAccount: refreshes and logins fail with invalid_grant.
      if (typeof body.disabled === 'boolean') user.disabled = body.disabled;
      return sendJson(res, 200, { ok: true, user: { ...user, password: undefined } });
    }
    return sendJson(res, 404, { error: 'unknown knob' });
  }

  async function loginRoute(req, res, p) {
    const rest = p.slice(loginBase.length + 1).split('/');
    const [uid, sub] = rest;
    if (!uid || rest.length > 2 || (sub !== undefined && sub !== 'abort')) {
      return send(res, 404, 'not found\n');
    }
    let details;
    try {
      details = await provider.interactionDetails(req, res);
    } catch (err) {
      return send(res, 400, page('Sign In - error', `<h1>Sign In</h1>
<p class="error" id="error">The sign-in request has expired or is unknown (${esc(err.message)}). Start again from the application.</p>`), 'text/html; charset=utf-8');
    }
    if (details.uid !== uid) return send(res, 400, 'interaction mismatch\n');
    const action = `${loginBase}/${uid}`;

    try {
      if (sub === 'abort') {
        if (req.method !== 'POST') return send(res, 405, 'use POST\n', undefined, { Allow: 'POST' });
        await readBody(req);
        return provider.interactionFinished(req, res, {
          error: 'access_denied',
          error_description: 'End-User cancelled the sign-in',
        }, { mergeWithLastSubmission: false });
      }

      const client = await provider.Client.find(details.params.client_id);
      const clientName = client?.clientName ?? details.params.client_id;

      if (details.prompt.name === 'consent') {
        // first-party client: consent is granted without asking
        return provider.interactionFinished(req, res, {
          consent: { grantId: await ensureGrant(details.session.accountId, details.params, details.grantId) },
        }, { mergeWithLastSubmission: true });
      }
      if (details.prompt.name !== 'login') {
        return send(res, 400, `unsupported prompt ${details.prompt.name}\n`);
      }

      if (req.method === 'GET') {
        return send(res, 200, loginPage({
          action, abortAction: `${action}/abort`, clientName, username: details.params.login_hint,
        }), 'text/html; charset=utf-8');
      }
      if (req.method !== 'POST') return send(res, 405, 'method not allowed\n');

      const form = new URLSearchParams(await readBody(req));
      const username = form.get('username') ?? '';
      const password = form.get('password') ?? '';
      const user = users.byName.get(username);
      const ok = user && crypto.timingSafeEqual(
        crypto.createHash('sha256').update(password).digest(),
        crypto.createHash('sha256').update(user.password).digest(),
      );
      if (!ok) {
        log('login failed for', JSON.stringify(username));
        return send(res, 200, loginPage({
          action, abortAction: `${action}/abort`, clientName, username,
          error: 'Login failed! Please recheck the username and password and try again.',
        }), 'text/html; charset=utf-8');
      }
      log('login ok for', username);
      return provider.interactionFinished(req, res, {
        login: { accountId: user.sub, amr: ['BasicAuthenticator'], remember: true },
      }, { mergeWithLastSubmission: false });
    } catch (err) {
      console.error('[idp] login error', err);
      return send(res, 500, 'internal error\n');
    }
  }

  async function ensureGrant(accountId, params, grantId) {
    let grant = grantId ? await provider.Grant.find(grantId) : undefined;
    if (!grant) grant = new provider.Grant({ accountId, clientId: params.client_id });
    const scopes = String(params.scope ?? '').split(' ').filter((s) => SCOPES.includes(s));
    if (scopes.length) grant.addOIDCScope(scopes.join(' '));
    return grant.save();
  }

  function buildProvider(issuer) {
    const ttl = opts.tokenTtl;
    const configuration = {
      clients: [{
        client_id: opts.clientId,
        client_secret: opts.clientSecret,
        client_name: 'mcpgate',
        redirect_uris: opts.redirectUris,
        post_logout_redirect_uris: opts.postLogoutRedirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        // client_secret_post is accepted too: oidc-provider treats basic and post as one
        // family for a client registered with either.
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'RS256',
        scope: SCOPES.join(' '),
      }],
      adapter: memoryAdapterFactory(),
      jwks: { keys: [opts.signingKey] },
      responseTypes: ['code'],
      clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
      cookies: {
        keys: [crypto.randomBytes(32).toString('base64url')],
        names: {
          session: 'idp_session',
          interaction: 'idp_interaction',
          resume: 'idp_interaction_resume',
        },
      },
      scopes: SCOPES,
      claims: {
        acr: null,
        amr: null,
        auth_time: null,
        iss: null,
        sid: null,
        // amr/auth_time come from the login (not findAccount); Asgardeo's ID tokens carry both
        openid: ['sub', 'amr', 'auth_time'],
        profile: ['username', 'name', 'given_name', 'family_name'],
        email: ['email', 'email_verified'],
        roles: ['roles'],
        groups: ['groups'],
      },
      // Asgardeo puts the scope-selected attributes in the ID token as well as in userinfo
      conformIdTokenClaims: false,
      pkce: { required: () => true },
      features: {
        devInteractions: { enabled: false },
        dPoP: { enabled: false },
        introspection: { enabled: true, allowedPolicy: async () => true },
        revocation: { enabled: true, allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId },
        resourceIndicators: { enabled: false },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: async (ctx, form) => {
            // keep the buttons inside the <form> so simple form-following clients can submit it
            const inner = form.replace('</form>', `<button type="submit" id="sign-out" name="logout" value="yes">Yes, sign me out</button>
<button type="submit" id="stay" name="stay" value="1">No, stay signed in</button></form>`);
            ctx.type = 'html';
            ctx.body = page('Sign Out - test IdP', `<h1>Sign out of ${esc(opts.org)}?</h1>\n${inner}`);
          },
          postLogoutSuccessSource: async (ctx) => {
            ctx.type = 'html';
            ctx.body = page('Signed out - test IdP', '<h1>Signed out</h1><p id="signed-out">You have been signed out.</p>');
          },
        },
      },
      interactions: {
        url: async (ctx, interaction) => `${loginBase}/${interaction.uid}`,
      },
      // a first-party client: grant whatever OIDC scopes it asks for, no consent screen
      loadExistingGrant: async (ctx) => {
        const { oidc } = ctx;
        const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
        return provider.Grant.find(await ensureGrant(oidc.account.accountId, {
          client_id: oidc.client.clientId, scope: [...oidc.requestParamOIDCScopes].join(' '),
        }, grantId));
      },
      findAccount: async (ctx, id) => {
        const user = users.bySub.get(id);
        if (!user || user.disabled) return undefined;
        return {
          accountId: id,
          async claims(use) {
            const c = {
              sub: user.sub,
              username: user.username,
              name: user.name,
              given_name: user.given_name,
              family_name: user.family_name,
              email: user.email,
              email_verified: user.email_verified,
            };
            if (!(opts.rolesOnlyInUserinfo && use === 'id_token')) {
              c.roles = [...user.roles];
              c.groups = [...user.groups];
            }
            return c;
          },
        };
      },
      // like Asgardeo: a refresh token whenever the client may use the refresh_token grant
      issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
      rotateRefreshToken: () => true,
      expiresWithSession: async () => false,
      ttl: {
        AccessToken: ttl,
        AuthorizationCode: 120,
        ClientCredentials: 600,
        IdToken: ttl,
        RefreshToken: 24 * 3600,
        Interaction: 900,
        Session: 24 * 3600,
        Grant: 24 * 3600,
        DeviceCode: 600,
        BackchannelAuthenticationRequest: 600,
        PreAuthorizedCode: 600,
      },
      clientBasedCORS: () => false,
      renderError: async (ctx, out) => {
        ctx.type = 'html';
        ctx.body = page('Error - test IdP', `<h1>Error</h1>
${Object.entries(out).map(([k, v]) => `<p><strong>${esc(k)}</strong>: <span id="${esc(k)}">${esc(v)}</span></p>`).join('\n')}`);
      },
      routes: {
        authorization: '/oauth2/authorize',
        token: '/oauth2/token',
        jwks: '/oauth2/jwks',
        userinfo: '/oauth2/userinfo',
        revocation: '/oauth2/revoke',
        introspection: '/oauth2/introspect',
        pushed_authorization_request: '/oauth2/par',
        end_session: '/oidc/logout',
      },
    };
    const prov = new Provider(issuer, configuration);

    // Asgardeo's ID tokens from the token endpoint carry sid, azp and at_hash; oidc-provider
    // puts sid in only for clients with back-channel logout, at_hash only in hybrid/implicit
    // responses, and never azp.
    prov.Client.prototype.includeSid = () => true;
    const { issue } = prov.IdToken.prototype;
    prov.IdToken.prototype.issue = function issueWithAzp(args) {
      if (args?.use === 'idtoken') {
        this.set('azp', this.client.clientId);
        const at = this.ctx?.oidc?.entities?.AccessToken;
        if (at?.jti && this.extra.at_hash === undefined) this.set('at_hash', at.jti);
      }
      return issue.call(this, args);
    };

    prov.on('server_error', (ctx, err) => console.error('[idp] server_error', err));
    if (opts.verbose) {
      for (const ev of ['grant.error', 'authorization.error', 'userinfo.error', 'end_session.error']) {
        prov.on(ev, (ctx, err) => log(ev, err.message, err.error_description ?? ''));
      }
    }
    return prov;
  }

  let issuer;
  async function resetProvider() {
    provider = buildProvider(issuer);
    handle = provider.callback();
  }

  opts.signingKey = signingKey(opts.keyFile);
  const server = http.createServer((req, res) => {
    onRequest(req, res).catch((err) => {
      console.error('[idp] request failed', err);
      if (!res.headersSent) send(res, err.status ?? 500, 'internal error\n');
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address();
  const hostPart = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  issuer = `http://${hostPart}:${port}${prefix}/oauth2/token`;
  await resetProvider();

  return {
    issuer,
    port,
    server,
    get provider() { return provider; },
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

async function main() {
  let opts;
  try {
    opts = parseOptions();
  } catch (err) {
    console.error(`idp: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  if (opts.help) {
    console.log(USAGE);
    return;
  }
  const idp = await startIdp(opts);
  let stopping = false;
  const stop = (sig) => {
    if (stopping) return;
    stopping = true;
    if (opts.verbose) console.error(`[idp] ${sig}: shutting down`);
    const t = setTimeout(() => process.exit(0), 2000);
    t.unref();
    idp.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (opts.exitOnStdinClose) {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin error'));
    process.stdin.resume();
  }
  process.stdout.write(`idp ready ${idp.issuer}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((err) => {
    console.error('idp: failed to start:', err);
    process.exit(1);
  });
}
