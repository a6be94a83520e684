// Self-test of the local Asgardeo-shaped IdP and of the browserless client.
//   node --test tests/idp/selftest.test.mjs
// (run `npm ci` in tests/idp first)

import { strict as assert } from 'node:assert';
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import {
  after, before, describe, test,
} from 'node:test';

import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';

import {
  CookieJar, FlowError, basicAuth, followFlow, loginViaForm, makePkce, parseForms, formRequest,
} from './browserless.mjs';
import { startIdpProcess } from './launch.mjs';

const CLIENT_ID = 'mcpgate-demo';
const CLIENT_SECRET = 'mcpgate-demo-secret';
const REDIRECT_URI = 'http://127.0.0.1:8080/callback';
const ALICE_SUB = '7f3c2a9e-4b1d-4c8e-9a6f-1d2e3f4a5b6c';
const T = { timeout: 20000 };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const running = new Set();
process.on('exit', () => {
  for (const idp of running) idp.proc.kill('SIGKILL');
});

async function launch(opts) {
  const idp = await startIdpProcess({ timeoutMs: 15000, ...opts });
  running.add(idp);
  return idp;
}

async function stopIdp(idp) {
  if (!idp) return undefined;
  const r = await idp.stop();
  running.delete(idp);
  return r;
}

function get(url, init = {}) {
  return fetch(url, { signal: AbortSignal.timeout(5000), redirect: 'manual', ...init });
}

async function getJson(url, init) {
  const res = await get(url, init);
  const body = await res.json();
  return { status: res.status, body, headers: res.headers };
}

function authorizeUrl(disc, {
  scope = 'openid profile email roles', clientId = CLIENT_ID, redirectUri = REDIRECT_URI, pkce, state, nonce, extra = {},
}) {
  const u = new URL(disc.authorization_endpoint);
  const p = {
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    scope,
    state,
    nonce,
    ...(pkce ? { code_challenge: pkce.challenge, code_challenge_method: 'S256' } : {}),
    ...extra,
  };
  for (const [k, v] of Object.entries(p)) if (v !== undefined) u.searchParams.set(k, v);
  return u.href;
}

// token endpoint call with either client authentication method
async function tokenRequest(disc, params, { auth = 'basic', clientId = CLIENT_ID, secret = CLIENT_SECRET } = {}) {
  const body = new URLSearchParams(params);
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (auth === 'basic') {
    headers.authorization = basicAuth(clientId, secret);
  } else {
    body.set('client_id', clientId);
    body.set('client_secret', secret);
  }
  return getJson(disc.token_endpoint, { method: 'POST', headers, body: body.toString() });
}

// a whole authorization-code + PKCE login; returns the token response and what was sent
async function login(disc, {
  username = 'alice', password = 'alice-pass', scope, auth = 'basic', jar = new CookieJar(),
} = {}) {
  const pkce = makePkce();
  const state = crypto.randomBytes(12).toString('base64url');
  const nonce = crypto.randomBytes(12).toString('base64url');
  const cb = await loginViaForm({
    authorizeUrl: authorizeUrl(disc, {
      scope, pkce, state, nonce,
    }),
    username,
    password,
    jar,
    timeoutMs: 10000,
  });
  const u = new URL(cb);
  assert.equal(`${u.origin}${u.pathname}`, REDIRECT_URI);
  assert.equal(u.searchParams.get('state'), state);
  assert.equal(u.searchParams.get('iss'), disc.issuer);
  const code = u.searchParams.get('code');
  assert.ok(code, `no code in ${cb}`);
  const tok = await tokenRequest(disc, {
    grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: pkce.verifier,
  }, { auth });
  assert.equal(tok.status, 200, JSON.stringify(tok.body));
  return {
    tokens: tok.body, nonce, jar, code, pkce,
  };
}

function atHash(accessToken) {
  const h = crypto.createHash('sha256').update(accessToken).digest();
  return h.subarray(0, 16).toString('base64url');
}

async function verifyIdToken(disc, jwks, idToken, nonce) {
  const { payload, protectedHeader } = await jwtVerify(idToken, jwks, {
    issuer: disc.issuer, audience: CLIENT_ID, algorithms: ['RS256'],
  });
  assert.equal(protectedHeader.alg, 'RS256');
  assert.ok(protectedHeader.kid, 'kid in header');
  if (nonce !== undefined) assert.equal(payload.nonce, nonce);
  return payload;
}

describe('test IdP (default options, test knobs on)', () => {
  let idp;
  let disc;
  let jwks;

  before(async () => {
    idp = await launch({ args: ['--test-knobs'] });
  });
  after(async () => {
    await stopIdp(idp);
  });

  test('discovery is at <issuer>/.well-known/openid-configuration with Asgardeo-shaped URLs', T, async () => {
    const base = `${idp.origin}/t/demo`;
    assert.equal(idp.issuer, `${base}/oauth2/token`);
    const r = await getJson(`${idp.issuer}/.well-known/openid-configuration`);
    assert.equal(r.status, 200);
    disc = r.body;
    assert.equal(disc.issuer, `${base}/oauth2/token`);
    assert.equal(disc.authorization_endpoint, `${base}/oauth2/authorize`);
    assert.equal(disc.token_endpoint, `${base}/oauth2/token`);
    assert.equal(disc.jwks_uri, `${base}/oauth2/jwks`);
    assert.equal(disc.userinfo_endpoint, `${base}/oauth2/userinfo`);
    assert.equal(disc.revocation_endpoint, `${base}/oauth2/revoke`);
    assert.equal(disc.introspection_endpoint, `${base}/oauth2/introspect`);
    assert.equal(disc.end_session_endpoint, `${base}/oidc/logout`);
    assert.deepEqual(disc.code_challenge_methods_supported, ['S256']);
    for (const m of ['client_secret_basic', 'client_secret_post']) {
      assert.ok(disc.token_endpoint_auth_methods_supported.includes(m), m);
    }
    for (const s of ['openid', 'profile', 'email', 'roles', 'groups', 'offline_access']) {
      assert.ok(disc.scopes_supported.includes(s), s);
    }
    assert.ok(disc.id_token_signing_alg_values_supported.includes('RS256'));

    // Asgardeo's other discovery path works too; the oidc-provider default one does not exist
    const alt = await getJson(`${base}/oauth2/oidcdiscovery/.well-known/openid-configuration`);
    assert.equal(alt.body.issuer, disc.issuer);
    assert.equal((await get(`${base}/.well-known/openid-configuration`)).status, 404);

    const keys = await getJson(disc.jwks_uri);
    assert.equal(keys.status, 200);
    assert.equal(keys.body.keys.length, 1);
    const [k] = keys.body.keys;
    assert.equal(k.kty, 'RSA');
    assert.equal(k.alg, 'RS256');
    assert.ok(k.kid);
    assert.equal(k.d, undefined, 'no private parts in the JWKS');
    jwks = createLocalJWKSet(keys.body);
  });

  test('login as alice (roles scope), code + PKCE, client_secret_basic: signed ID token with roles', T, async () => {
    const { tokens, nonce } = await login(disc, { scope: 'openid profile email roles' });
    assert.equal(tokens.token_type, 'Bearer');
    assert.ok(tokens.access_token);
    assert.ok(tokens.refresh_token, 'refresh token even without offline_access');
    const c = await verifyIdToken(disc, jwks, tokens.id_token, nonce);
    assert.equal(c.sub, ALICE_SUB);
    assert.match(c.sub, UUID);
    assert.equal(c.aud, CLIENT_ID);
    assert.equal(c.azp, CLIENT_ID);
    assert.equal(c.username, 'alice');
    assert.equal(c.email, 'alice@example.com');
    assert.equal(c.email_verified, true);
    assert.equal(c.name, 'Alice Manager');
    assert.equal(c.given_name, 'Alice');
    assert.equal(c.family_name, 'Manager');
    assert.deepEqual(c.roles, ['manager', 'employee']);
    assert.equal(c.groups, undefined, 'groups only with the groups scope');
    assert.ok(c.sid, 'sid');
    assert.equal(c.at_hash, atHash(tokens.access_token));
    assert.ok(Number.isInteger(c.iat) && Number.isInteger(c.exp) && c.exp > c.iat);

    const ui = await getJson(disc.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    assert.equal(ui.status, 200);
    assert.equal(ui.body.sub, ALICE_SUB);
    assert.equal(ui.body.email, 'alice@example.com');
    assert.deepEqual(ui.body.roles, ['manager', 'employee']);
  });

  test('login without roles scope, client_secret_post: no roles anywhere; groups scope gives groups', T, async () => {
    const { tokens, nonce } = await login(disc, { scope: 'openid profile email groups', auth: 'post' });
    const c = await verifyIdToken(disc, jwks, tokens.id_token, nonce);
    assert.equal(c.sub, ALICE_SUB);
    assert.equal(c.roles, undefined);
    assert.deepEqual(c.groups, ['staff', 'managers']);
    const ui = await getJson(disc.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    assert.equal(ui.status, 200);
    assert.equal(ui.body.roles, undefined);
    assert.deepEqual(ui.body.groups, ['staff', 'managers']);

    // openid alone: no attributes at all (as on Asgardeo)
    const bare = await login(disc, { scope: 'openid' });
    const b = decodeJwt(bare.tokens.id_token);
    assert.equal(b.email, undefined);
    assert.equal(b.roles, undefined);
    assert.equal(b.sub, ALICE_SUB);
  });

  test('refresh: rotation, new ID token, old refresh token refused', T, async () => {
    const { tokens } = await login(disc, { scope: 'openid profile email roles offline_access', auth: 'post' });
    assert.ok(tokens.refresh_token);
    const r1 = await tokenRequest(disc, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    assert.equal(r1.status, 200, JSON.stringify(r1.body));
    assert.ok(r1.body.access_token);
    assert.notEqual(r1.body.access_token, tokens.access_token);
    assert.ok(r1.body.refresh_token);
    assert.notEqual(r1.body.refresh_token, tokens.refresh_token, 'rotation');
    const c = await verifyIdToken(disc, jwks, r1.body.id_token);
    assert.equal(c.sub, ALICE_SUB);
    assert.deepEqual(c.roles, ['manager', 'employee']);
    assert.equal(c.at_hash, atHash(r1.body.access_token));

    // the same refresh token with basic auth works as well (both methods accepted)
    const r2 = await tokenRequest(disc, { grant_type: 'refresh_token', refresh_token: r1.body.refresh_token }, { auth: 'basic' });
    assert.equal(r2.status, 200, JSON.stringify(r2.body));

    const old = await tokenRequest(disc, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    assert.equal(old.status, 400);
    assert.equal(old.body.error, 'invalid_grant');
  });

  test('a second authorization reuses the IdP session (no login form)', T, async () => {
    const { jar } = await login(disc, { scope: 'openid roles' });
    const pkce = makePkce();
    const r = await followFlow(authorizeUrl(disc, { scope: 'openid email', pkce, state: 's2' }), {
      jar, stopAt: REDIRECT_URI, timeoutMs: 10000,
    });
    assert.equal(r.done, true);
    assert.ok(new URL(r.url).searchParams.get('code'));
    assert.ok(r.steps.every((s) => !s.url.includes('/authenticationendpoint/')), 'no login page');
  });

  test('wrong password: the form comes back with an error; bob can log in', T, async () => {
    const pkce = makePkce();
    const url = authorizeUrl(disc, { pkce, state: 'x' });
    await assert.rejects(
      loginViaForm({ authorizeUrl: url, username: 'alice', password: 'wrong', timeoutMs: 10000 }),
      (err) => err instanceof FlowError && /Login failed/.test(err.message)
        && /id="username"/.test(err.result.html) && /id="sign-in"/.test(err.result.html),
    );
    const bob = await login(disc, { username: 'bob', password: 'bob-pass', scope: 'openid email roles groups' });
    const c = decodeJwt(bob.tokens.id_token);
    assert.match(c.sub, UUID);
    assert.notEqual(c.sub, ALICE_SUB);
    assert.equal(c.email, 'bob@example.com');
    assert.deepEqual(c.roles, ['employee']);
    assert.deepEqual(c.groups, ['staff']);
  });

  test('cancel at the login page gives error=access_denied at the redirect_uri', T, async () => {
    const pkce = makePkce();
    const cb = await loginViaForm({
      authorizeUrl: authorizeUrl(disc, { pkce, state: 'c1' }),
      forms: [{ match: 'cancel-form', button: 'cancel' }],
      timeoutMs: 10000,
    });
    const u = new URL(cb);
    assert.equal(u.searchParams.get('error'), 'access_denied');
    assert.equal(u.searchParams.get('state'), 'c1');
  });

  test('PKCE is required and checked; client secret is checked', T, async () => {
    const r = await followFlow(authorizeUrl(disc, { state: 'p1' }), { stopAt: REDIRECT_URI, timeoutMs: 10000 });
    assert.equal(r.done, true);
    assert.equal(new URL(r.url).searchParams.get('error'), 'invalid_request');

    const { jar } = await login(disc, { scope: 'openid' });
    const pkce = makePkce();
    const again = await followFlow(authorizeUrl(disc, { scope: 'openid', pkce, state: 'p2' }), {
      jar, stopAt: REDIRECT_URI, timeoutMs: 10000,
    });
    const code = new URL(again.url).searchParams.get('code');
    const bad = await tokenRequest(disc, {
      grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: makePkce().verifier,
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'invalid_grant');

    const wrongSecret = await tokenRequest(disc, { grant_type: 'refresh_token', refresh_token: 'x' }, { secret: 'nope' });
    assert.equal(wrongSecret.status, 401);
    assert.equal(wrongSecret.body.error, 'invalid_client');
  });

  test('test knobs: fail-next-token, user roles, reset', T, async () => {
    const { tokens } = await login(disc, { scope: 'openid roles' });
    const knob = (p, body) => getJson(`${idp.origin}/__test/${p}`, { method: 'POST', body: body ? JSON.stringify(body) : undefined });

    assert.equal((await knob('fail-next-token')).status, 200);
    const f1 = await tokenRequest(disc, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    assert.equal(f1.status, 500);
    assert.equal(f1.body.error, 'server_error');

    await knob('fail-next-token', { status: 400, error: 'invalid_grant' });
    const f2 = await tokenRequest(disc, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    assert.equal(f2.status, 400);
    assert.equal(f2.body.error, 'invalid_grant');

    // the refresh token was not used up by the failed calls; new roles show after a refresh
    assert.equal((await knob('users/alice', { roles: ['employee'] })).status, 200);
    const ok = await tokenRequest(disc, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(decodeJwt(ok.body.id_token).roles, ['employee']);

    assert.equal((await knob('reset')).status, 200);
    // reset drops every session and token and reloads users.json
    const gone = await tokenRequest(disc, { grant_type: 'refresh_token', refresh_token: ok.body.refresh_token });
    assert.equal(gone.body.error, 'invalid_grant');
    const fresh = await login(disc, { scope: 'openid roles' });
    assert.deepEqual(decodeJwt(fresh.tokens.id_token).roles, ['manager', 'employee']);
  });

  test('logout at /t/<org>/oidc/logout with id_token_hint and post_logout_redirect_uri', T, async () => {
    const { tokens, jar } = await login(disc, { scope: 'openid' });
    const u = new URL(disc.end_session_endpoint);
    u.searchParams.set('id_token_hint', tokens.id_token);
    u.searchParams.set('post_logout_redirect_uri', 'http://127.0.0.1:8080/');
    u.searchParams.set('state', 'bye');
    const r = await followFlow(u.href, {
      jar, stopAt: 'http://127.0.0.1:8080/', forms: [{ match: /\/oidc\/logout\/confirm/, button: 'sign-out' }], timeoutMs: 10000,
    });
    assert.equal(r.done, true, JSON.stringify(r.steps));
    assert.equal(new URL(r.url).searchParams.get('state'), 'bye');
    // the IdP session is gone: the next authorization shows the login form again
    const next = await followFlow(authorizeUrl(disc, { pkce: makePkce() }), { jar, stopAt: REDIRECT_URI, timeoutMs: 10000 });
    assert.equal(next.done, false);
    assert.match(next.html, /id="sign-in"/);
  });
});

describe('test IdP configured by environment, --roles-only-in-userinfo', () => {
  let idp;
  const redirect = 'http://127.0.0.1:9999/cb';
  before(async () => {
    idp = await launch({
      args: ['--roles-only-in-userinfo'],
      env: {
        IDP_ORG: 'acme', IDP_CLIENT_ID: 'gw', IDP_CLIENT_SECRET: 's3cret with space', IDP_REDIRECT_URIS: `http://127.0.0.1:1/x,${redirect}`,
      },
    });
  });
  after(async () => {
    await stopIdp(idp);
  });

  test('roles/groups are only in userinfo; env vars select org, client and redirect URIs', T, async () => {
    assert.equal(idp.issuer, `${idp.origin}/t/acme/oauth2/token`);
    const disc = (await getJson(`${idp.issuer}/.well-known/openid-configuration`)).body;
    assert.equal(disc.authorization_endpoint, `${idp.origin}/t/acme/oauth2/authorize`);
    const pkce = makePkce();
    const cb = await loginViaForm({
      authorizeUrl: authorizeUrl(disc, {
        scope: 'openid email roles groups', clientId: 'gw', redirectUri: redirect, pkce, nonce: 'n',
      }),
      username: 'alice',
      password: 'alice-pass',
      timeoutMs: 10000,
    });
    const code = new URL(cb).searchParams.get('code');
    const tok = await tokenRequest(disc, {
      grant_type: 'authorization_code', code, redirect_uri: redirect, code_verifier: pkce.verifier,
    }, { clientId: 'gw', secret: 's3cret with space' });
    assert.equal(tok.status, 200, JSON.stringify(tok.body));
    const jwks = createLocalJWKSet((await getJson(disc.jwks_uri)).body);
    const { payload } = await jwtVerify(tok.body.id_token, jwks, { issuer: disc.issuer, audience: 'gw' });
    assert.equal(payload.email, 'alice@example.com');
    assert.equal(payload.roles, undefined);
    assert.equal(payload.groups, undefined);
    const ui = await getJson(disc.userinfo_endpoint, { headers: { authorization: `Bearer ${tok.body.access_token}` } });
    assert.deepEqual(ui.body.roles, ['manager', 'employee']);
    assert.deepEqual(ui.body.groups, ['staff', 'managers']);
    // knobs are off unless asked for
    assert.equal((await get(`${idp.origin}/__test/reset`, { method: 'POST' })).status, 404);
  });

  test('SIGTERM stops it cleanly', T, async () => {
    const r = await stopIdp(idp);
    idp = undefined;
    assert.equal(r.code, 0);
  });
});

describe('browserless client', () => {
  test('parseForms/formRequest: hidden fields, chosen button, form="" attribute, entities', () => {
    const html = `<form method="POST" action="/consent?x=1&amp;y=2" id="c">
      <input type="hidden" name="csrf" value="t&quot;1">
      <input type=checkbox name=remember value=yes checked><input type="checkbox" name="no">
      <textarea name="note">a &lt;b&gt;</textarea>
      <button type="submit" name="decision" value="approve" id="approve">Approve</button>
      <button type="submit" name="decision" value="deny" id="deny">Deny</button>
    </form><button form="c" name="other" value="1" id="outside">Outside</button>
    <form action="search"><input name="q"></form>`;
    const forms = parseForms(html, 'http://127.0.0.1:5/a/b');
    assert.equal(forms.length, 2);
    assert.equal(forms[0].action, 'http://127.0.0.1:5/consent?x=1&y=2');
    assert.equal(forms[0].method, 'POST');
    assert.equal(forms[1].action, 'http://127.0.0.1:5/a/search');
    const deny = formRequest(forms[0], { button: 'deny' });
    assert.equal(deny.body, 'csrf=t%221&remember=yes&note=a+%3Cb%3E&decision=deny');
    assert.equal(formRequest(forms[0], {}).body.endsWith('decision=approve'), true);
    assert.equal(formRequest(forms[0], { button: 'outside' }).body.endsWith('other=1'), true);
    assert.equal(formRequest(forms[1], { fields: { q: 'a b' } }).url, 'http://127.0.0.1:5/a/search?q=a+b');
    assert.throws(() => formRequest(forms[0], { button: 'nope' }), /no button/);
  });

  test('CookieJar: host-only, ports ignored, path scope, Max-Age=0 deletes', () => {
    const jar = new CookieJar();
    jar.store('http://127.0.0.1:1000/t/demo/login/abc', [
      'a=1; Path=/; HttpOnly', 'b=2; Path=/t/demo/login/abc', 'c=3', '__Host-s=4; Path=/; Secure; SameSite=Lax',
    ]);
    assert.equal(jar.header('http://127.0.0.1:2000/'), 'a=1; __Host-s=4');
    assert.equal(jar.header('http://127.0.0.1:1000/t/demo/login/abc'), 'b=2; c=3; a=1; __Host-s=4');
    assert.equal(jar.header('http://127.0.0.1:1000/t/demo/login/abcd'), 'c=3; a=1; __Host-s=4');
    assert.equal(jar.header('http://localhost:1000/'), '');
    jar.store('http://127.0.0.1:1000/', ['a=; Max-Age=0; Path=/']);
    assert.equal(jar.get('a'), undefined);
    jar.store('http://127.0.0.1:1000/', ['d=5; Domain=example.com']);
    assert.equal(jar.get('d'), undefined, 'cookie for another domain rejected');
  });

  test('followFlow follows a plain consent form on another server when told which button', T, async () => {
    const seen = [];
    const srv = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        seen.push(`${req.method} ${req.url} cookie=${req.headers.cookie ?? ''} ${body}`);
        if (req.url === '/authorize') {
          res.writeHead(302, { location: '/consent', 'set-cookie': 'gw=1; Path=/; HttpOnly' }).end();
        } else if (req.url === '/consent' && req.method === 'GET') {
          res.writeHead(200, { 'content-type': 'text/html' }).end(`<html><body><form method="post" action="/consent">
<input type="hidden" name="csrf" value="tok"><button name="action" value="deny" id="deny">Deny</button>
<button name="action" value="approve" id="approve">Approve</button></form></body></html>`);
        } else if (req.url === '/consent' && req.method === 'POST') {
          const p = new URLSearchParams(body);
          const ok = req.headers.cookie === 'gw=1' && p.get('csrf') === 'tok';
          res.writeHead(303, { location: `http://127.0.0.1:1/cb?result=${ok ? p.get('action') : 'bad'}` }).end();
        } else {
          res.writeHead(404).end();
        }
      });
    });
    await new Promise((r) => { srv.listen(0, '127.0.0.1', r); });
    try {
      const { port } = srv.address();
      const url = await loginViaForm({
        authorizeUrl: `http://127.0.0.1:${port}/authorize`,
        redirectUri: 'http://127.0.0.1:1/cb',
        forms: [{ match: /\/consent$/, button: 'approve' }],
        timeoutMs: 5000,
      });
      assert.equal(url, 'http://127.0.0.1:1/cb?result=approve');
      // without a rule for the page the flow stops there, with the page in the error
      await assert.rejects(
        loginViaForm({ authorizeUrl: `http://127.0.0.1:${port}/authorize`, redirectUri: 'http://127.0.0.1:1/cb', timeoutMs: 5000 }),
        (err) => err instanceof FlowError && err.result.url.endsWith('/consent') && err.result.status === 200,
      );
    } finally {
      srv.closeAllConnections();
      await new Promise((r) => { srv.close(r); });
    }
  });
});
