// What mcpgate's authorization server and bearer check refuse, and how: each
// case asserts the status and the error code (or the HTML page) a client or a
// person gets. Real redis-server, the test IdP (with its test knobs), the
// gateway under ASan; plus a second gateway with a 3/min registration rate
// and a third whose IdP issuer is dead.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { parseForms } from '../idp/browserless.mjs';
import { freePort, parseRawResponse, rawRequest, request as rawHttp, waitFor } from '../lib/harness.mjs';
import {
  CookieJar, IDP_CLIENT_SECRET, assertNoSecretsInLog, authorizeUrl, basicAuth, callRoute, clientMetadata,
  exchangeCode, http, login, makePkce, newClient, obtainTokens, refresh, registerClient, revoke,
  startOAuthStack, tokenRequest, waitRefused,
} from '../lib/oauth.mjs';

const A = '/mcp/whoami';
const B = '/mcp/other';
const fakeToken = (prefix) => `${prefix}${randomBytes(32).toString('base64url')}`;
let cbPort = 40000;
const nextRedirect = () => `http://127.0.0.1:${cbPort++}/cb`;

function assertHtmlPage(r, status, what) {
  assert.equal(r.status, status, `${what}: status ${r.status}: ${r.text.slice(0, 300)}`);
  assert.match(r.headers.get('content-type') || '', /^text\/html/, `${what}: content type`);
  assert.equal(r.location, null, `${what}: must not redirect (Location: ${r.location})`);
}

function assertOAuthError(r, status, error, what) {
  assert.equal(r.status, status, `${what}: status ${r.status}: ${r.text.slice(0, 300)}`);
  assert.match(r.headers.get('content-type') || '', /^application\/json/, `${what}: content type`);
  assert.equal(r.json?.error, error, `${what}: body ${r.text}`);
  assert.equal(r.headers.get('cache-control'), 'no-store', `${what}: Cache-Control`);
}

/** The client's redirect carried error=ERROR, the original state and iss. */
function assertErrorRedirect(r, client, error, state, iss, what) {
  assert.equal(r.status, 302, `${what}: status ${r.status}: ${r.text.slice(0, 300)}`);
  const loc = new URL(r.location);
  assert.equal(loc.origin + loc.pathname, client.redirect_uris[0], `${what}: redirected to ${r.location}`);
  assert.equal(loc.searchParams.get('error'), error, `${what}: ${r.location}`);
  assert.equal(loc.searchParams.get('state'), state, `${what}: state echoed`);
  assert.equal(loc.searchParams.get('iss'), iss, `${what}: iss`);
  assert.equal(loc.searchParams.get('code'), null);
}

/** GETs the consent page with JAR and returns {page, form, fields}. */
async function consentPage(base, client, jar, opts = {}) {
  const page = await http(authorizeUrl(base, client, opts), { jar });
  assert.equal(page.status, 200, `consent page: ${page.status} ${page.location || page.text.slice(0, 300)}`);
  const f = parseForms(page.text, `${base}/authorize`).find((x) => x.action === `${base}/authorize`);
  assert.ok(f, 'the consent page has a form posting to /authorize');
  const fields = Object.fromEntries(f.fields.map((x) => [x.name, x.value]));
  return { page, form: f, fields };
}

function postConsent(base, fields, { jar, headers = {} } = {}) {
  return http(`${base}/authorize`, {
    method: 'POST',
    jar,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });
}

const auditCount = (gw, msg) => gw.logs().filter((l) => l.module === 'audit' && l.msg === msg).length;

describe('oauth negative paths', () => {
  let s; // the main stack
  let rl; // a gateway with registration rate 3/min
  let dead; // a gateway whose IdP is unreachable
  const gateways = [];

  before(async () => {
    s = await startOAuthStack({ oauth: { registration: { max_body: '4KiB', rate: '1000/min' } } });
    gateways.push(s.gw);
  });

  after(async () => {
    for (const gw of gateways) if (!gw.exited) await gw.stop().catch(() => {});
  });

  // ---- metadata ----------------------------------------------------------------------

  describe('metadata', () => {
    test('AS metadata: issuer byte-identical to public_url, S256 only, iss parameter, CORS', async () => {
      const r = await http(`${s.url}/.well-known/oauth-authorization-server`, { headers: { origin: 'https://app.example' } });
      assert.equal(r.status, 200);
      const m = r.json;
      assert.equal(m.issuer, s.url);
      assert.equal(m.authorization_endpoint, `${s.url}/authorize`);
      assert.equal(m.token_endpoint, `${s.url}/token`);
      assert.equal(m.registration_endpoint, `${s.url}/register`);
      assert.equal(m.revocation_endpoint, `${s.url}/revoke`);
      assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
      assert.deepEqual(m.response_types_supported, ['code']);
      assert.equal(m.authorization_response_iss_parameter_supported, true);
      assert.deepEqual([...m.token_endpoint_auth_methods_supported].sort(), ['client_secret_basic', 'client_secret_post', 'none']);
      assert.equal(r.headers.get('access-control-allow-origin'), '*');
    });

    test('PRM of each route: resource = exact route URL, authorization_servers = [issuer], CORS', async () => {
      for (const p of [A, B]) {
        const r = await http(`${s.url}/.well-known/oauth-protected-resource${p}`, { headers: { origin: 'https://app.example' } });
        assert.equal(r.status, 200, p);
        assert.equal(r.json.resource, `${s.url}${p}`);
        assert.deepEqual(r.json.authorization_servers, [s.url]);
        assert.deepEqual(r.json.bearer_methods_supported, ['header']);
        assert.deepEqual(r.json.scopes_supported, ['mcp:tools']);
        assert.equal(r.headers.get('access-control-allow-origin'), '*');
      }
      const pre = await http(`${s.url}/.well-known/oauth-protected-resource${A}`, {
        method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' },
      });
      assert.equal(pre.status, 204);
      assert.match(pre.headers.get('access-control-allow-methods') || '', /GET/);
      assert.equal(pre.headers.get('access-control-allow-origin'), '*');
      const none = await http(`${s.url}/.well-known/oauth-protected-resource/mcp/nope`);
      assert.equal(none.status, 404);
    });
  });

  // ---- /authorize --------------------------------------------------------------------

  describe('/authorize', () => {
    let client;
    before(async () => {
      client = await newClient(s.url, { redirectUri: nextRedirect() });
    });

    test('unregistered client → 400 HTML page, no redirect', async () => {
      const r = await http(authorizeUrl(s.url, { client_id: 'no-such-client', redirect_uris: [client.redirect_uris[0]] }, { state: 'st' }));
      assertHtmlPage(r, 400, 'unknown client');
      assert.match(r.text, /not registered/);
    });

    test('unregistered redirect_uri → 400 HTML page, no redirect', async () => {
      for (const uri of ['https://evil.example/cb', client.redirect_uris[0].replace('/cb', '/other'), `${client.redirect_uris[0]}/x`]) {
        const r = await http(authorizeUrl(s.url, client, { redirectUri: uri, state: 'st' }));
        assertHtmlPage(r, 400, `redirect_uri ${uri}`);
        assert.match(r.text, /not registered|has not registered/);
      }
    });

    test('missing code_challenge → redirect with invalid_request, state (byte-exact) and iss', async () => {
      const state = 'a b&c=d/é?#%';
      const r = await http(authorizeUrl(s.url, client, { pkce: null, state }));
      assertErrorRedirect(r, client, 'invalid_request', state, s.url, 'no code_challenge');
    });

    test('code_challenge_method=plain → invalid_request', async () => {
      const p = makePkce();
      const r = await http(authorizeUrl(s.url, client, { pkce: { challenge: p.verifier }, method: 'plain', state: 's1' }));
      assertErrorRedirect(r, client, 'invalid_request', 's1', s.url, 'plain');
    });

    test('response_type=token → unsupported_response_type', async () => {
      const r = await http(authorizeUrl(s.url, client, { responseType: 'token', state: 's2' }));
      assertErrorRedirect(r, client, 'unsupported_response_type', 's2', s.url, 'response_type=token');
    });

    test('unknown scope → invalid_scope', async () => {
      const r = await http(authorizeUrl(s.url, client, { scope: 'mcp:tools admin:everything', state: 's3' }));
      assertErrorRedirect(r, client, 'invalid_scope', 's3', s.url, 'bad scope');
    });

    test('resource that is not a route → invalid_target', async () => {
      for (const resource of [`${s.url}/mcp/nope`, 'https://other.example/mcp/whoami', `${s.url}${A}/`]) {
        const r = await http(authorizeUrl(s.url, client, { resource, state: 's4' }));
        assertErrorRedirect(r, client, 'invalid_target', 's4', s.url, `resource ${resource}`);
      }
    });

    test('prompt=none → login_required (mcpgate always needs an interactive login)', async () => {
      const r = await http(authorizeUrl(s.url, client, { prompt: 'none', state: 's5' }));
      assertErrorRedirect(r, client, 'login_required', 's5', s.url, 'prompt=none');
    });
  });

  // ---- the consent page ------------------------------------------------------------

  describe('consent page', () => {
    test('headers: no framing, strict CSP, no caching, no referrer', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const { page } = await consentPage(s.url, client, new CookieJar());
      assert.equal(page.headers.get('x-frame-options'), 'DENY');
      assert.match(page.headers.get('content-security-policy') || '', /frame-ancestors 'none'/);
      assert.match(page.headers.get('cache-control') || '', /no-store/);
      assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
      assert.match(page.headers.get('content-type') || '', /^text\/html/);
    });

    test('a client_name with <script> is shown escaped; the redirect host is shown', async () => {
      const name = '<script>alert("x")</script> Evil & Co';
      const redirectUri = nextRedirect();
      const client = await newClient(s.url, { redirectUri, name });
      const { page } = await consentPage(s.url, client, new CookieJar());
      assert.ok(!page.text.includes('<script>'), 'no raw <script> in the page');
      assert.ok(page.text.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Evil &amp; Co'), 'name shown escaped');
      assert.ok(page.text.includes(new URL(redirectUri).host), 'redirect host shown');
    });

    test('consent POST: missing CSRF, wrong CSRF, missing cookie → 403 HTML; the genuine POST still works', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const jar = new CookieJar();
      const { fields } = await consentPage(s.url, client, jar, { state: 'c1' });
      assert.ok(fields.request && fields.csrf, 'hidden request and csrf fields');

      const noCsrf = await postConsent(s.url, { request: fields.request, decision: 'approve' }, { jar });
      assertHtmlPage(noCsrf, 403, 'missing CSRF');
      const wrong = await postConsent(s.url, { ...fields, csrf: randomBytes(32).toString('base64url'), decision: 'approve' }, { jar });
      assertHtmlPage(wrong, 403, 'wrong CSRF');
      const noCookie = await postConsent(s.url, { ...fields, decision: 'approve' });
      assertHtmlPage(noCookie, 403, 'missing cookie');

      const cookie = jar.header(`${s.url}/authorize`);
      const ok = await postConsent(s.url, { ...fields, decision: 'approve' }, { jar });
      assert.equal(ok.status, 302, `genuine POST: ${ok.status} ${ok.text.slice(0, 200)}`);
      assert.ok(ok.location.startsWith(`${s.idp.base}/oauth2/authorize?`), `to the IdP: ${ok.location}`);
      // The pending authorization was used up: the same POST again is refused.
      const again = await postConsent(s.url, { ...fields, decision: 'approve' }, { headers: { cookie } });
      assertHtmlPage(again, 400, 'replayed decision');
    });

    test('Deny → redirect with access_denied, state and iss', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const jar = new CookieJar();
      const { fields } = await consentPage(s.url, client, jar, { state: 'deny-state' });
      const r = await postConsent(s.url, { ...fields, decision: 'deny' }, { jar });
      assertErrorRedirect(r, client, 'access_denied', 'deny-state', s.url, 'deny');
    });

    test('remembered consent skips the page for the same client in the same browser; prompt=consent shows it again', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const jar = new CookieJar();
      const first = await login(s, { client, jar });
      assert.match(first.params.get('code') || '', /^mcpgate_ac_/, first.url);

      const again = await http(authorizeUrl(s.url, client, { state: 'r2' }), { jar });
      assert.equal(again.status, 302, `second authorization: ${again.status}`);
      assert.ok(again.location.startsWith(`${s.idp.base}/oauth2/authorize?`), `straight to the IdP: ${again.location}`);
      // …and it completes (the IdP session is reused as well).
      const second = await login(s, { client, jar });
      assert.equal(second.steps.filter((x) => x.method === 'POST' && x.url === `${s.url}/authorize`).length, 0, 'no consent POST');
      assert.match(second.params.get('code') || '', /^mcpgate_ac_/);

      const forced = await http(authorizeUrl(s.url, client, { prompt: 'consent', state: 'r3' }), { jar });
      assert.equal(forced.status, 200, 'prompt=consent shows the page');
      assert.match(forced.text, /wants to use your account/);

      const other = await newClient(s.url, { redirectUri: nextRedirect() });
      const otherPage = await http(authorizeUrl(s.url, other, { state: 'r4' }), { jar });
      assert.equal(otherPage.status, 200, 'another client in the same browser still gets the consent page');
    });
  });

  // ---- /callback ------------------------------------------------------------------------

  describe('/callback', () => {
    test('state replay (the exact callback URL again, with its cookie) → 400 HTML page', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const jar = new CookieJar();
      const cb = await login(s, { client, jar, stopAt: 'callback' });
      const cookie = jar.header(cb.url);
      const first = await http(cb.url, { jar });
      assert.equal(first.status, 302, `first callback: ${first.status} ${first.text.slice(0, 200)}`);
      assert.match(new URL(first.location).searchParams.get('code') || '', /^mcpgate_ac_/);
      const replay = await http(cb.url, { headers: { cookie } });
      assertHtmlPage(replay, 400, 'state replay');
      const replaySameJar = await http(cb.url, { jar });
      assertHtmlPage(replaySameJar, 400, 'state replay, cookie already cleared');
    });

    test('/callback without the browser-binding cookie → 400 HTML; the right browser can still finish', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const jar = new CookieJar();
      const cb = await login(s, { client, jar, stopAt: 'callback' });
      const elsewhere = await http(cb.url, { jar: new CookieJar() });
      assertHtmlPage(elsewhere, 400, 'fresh jar');
      const mine = await http(cb.url, { jar });
      assert.equal(mine.status, 302);
      assert.match(new URL(mine.location).searchParams.get('code') || '', /^mcpgate_ac_/);
    });

    test('IdP token endpoint fails (500) → client redirected with server_error, state, iss', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const knob = await http(`${s.idp.origin}/__test/fail-next-token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      assert.equal(knob.status, 200);
      const f = await login(s, { client, state: 'idp-500' });
      assert.equal(f.params.get('error'), 'server_error', f.url);
      assert.equal(f.params.get('state'), 'idp-500');
      assert.equal(f.params.get('iss'), s.url);
      assert.equal(f.params.get('code'), null);
    });

    test('IdP token endpoint refuses the code (invalid_grant) → access_denied, state, iss', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const knob = await http(`${s.idp.origin}/__test/fail-next-token`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ status: 400, error: 'invalid_grant' }),
      });
      assert.equal(knob.status, 200);
      const f = await login(s, { client, state: 'idp-400' });
      assert.equal(f.params.get('error'), 'access_denied', f.url);
      assert.equal(f.params.get('state'), 'idp-400');
      assert.equal(f.params.get('iss'), s.url);
    });
  });

  // ---- /token ----------------------------------------------------------------------------

  describe('/token', () => {
    test('wrong code_verifier → 400 invalid_grant', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const f = await login(s, { client });
      const r = await exchangeCode(s.url, client, f, { code_verifier: makePkce().verifier });
      assertOAuthError(r, 400, 'invalid_grant', 'wrong verifier');
    });

    test('code replay → 400 invalid_grant, and the first exchange\'s tokens are revoked', async () => {
      const { client, flow, tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() } });
      const before = await callRoute(s.url, A, tokens.access_token);
      assert.ok(before.status !== 401 && before.status !== 403, `valid token on the route: ${before.status}`);
      const revokedBefore = auditCount(s.gw, 'grant revoked');
      const replay = await exchangeCode(s.url, client, flow);
      assertOAuthError(replay, 400, 'invalid_grant', 'code replay');
      await s.gw.waitForLog(() => auditCount(s.gw, 'grant revoked') > revokedBefore, 3000);

      const rt = await refresh(s.url, client, tokens.refresh_token);
      assertOAuthError(rt, 400, 'invalid_grant', 'refresh token of the replayed code');
      const r = await waitRefused(s.url, A, tokens.access_token);
      assert.equal(r.status, 401, `access token of the replayed code on the route: ${r.status}`);
      assert.equal(r.challenge?.params.error, 'invalid_token');
    });

    test('refresh-token reuse → 400 invalid_grant, and the whole grant is revoked', async () => {
      const { client, tokens: t1 } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() } });
      const r2 = await refresh(s.url, client, t1.refresh_token);
      assert.equal(r2.status, 200, r2.text);
      const t2 = r2.json;
      assert.match(t2.refresh_token, /^mcpgate_rt_/);
      assert.notEqual(t2.refresh_token, t1.refresh_token);
      const onRoute = await callRoute(s.url, A, t2.access_token);
      assert.ok(onRoute.status !== 401 && onRoute.status !== 403, `newest token on the route: ${onRoute.status}`);

      const revokedBefore = auditCount(s.gw, 'grant revoked');
      const reuse = await refresh(s.url, client, t1.refresh_token);
      assertOAuthError(reuse, 400, 'invalid_grant', 'reused refresh token');
      await s.gw.waitForLog(() => auditCount(s.gw, 'grant revoked') > revokedBefore, 3000);

      const newest = await refresh(s.url, client, t2.refresh_token);
      assertOAuthError(newest, 400, 'invalid_grant', 'newest refresh token after the reuse');
      const r = await waitRefused(s.url, A, t2.access_token);
      assert.equal(r.status, 401, `newest access token on the route: ${r.status}`);
      assert.equal(r.challenge?.params.error, 'invalid_token');
    });

    test('refresh-token reuse vs. the newest refresh token, at once or right after the 400: nothing issued then survives the revocation (50 trials)', async (t) => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const jar = new CookieJar(); // consent remembered and the IdP session reused: fast logins
      const served = [];
      for (let i = 0; i < 50; i++) {
        const { tokens: t1 } = await obtainTokens(s, { client, jar });
        const t2 = await refresh(s.url, client, t1.refresh_token);
        assert.equal(t2.status, 200, t2.text);
        let reuse;
        let newest;
        if (i % 2 === 0) {
          // The old refresh token (a reuse: revokes the grant) and the newest one at the same moment…
          [reuse, newest] = await Promise.all([refresh(s.url, client, t1.refresh_token), refresh(s.url, client, t2.json.refresh_token)]);
        } else {
          // …or the newest one right after the server answered "the grant is revoked".
          reuse = await refresh(s.url, client, t1.refresh_token);
          newest = await refresh(s.url, client, t2.json.refresh_token);
          if (newest.status === 200) served.push({ ...newest.json, after400: true });
        }
        assertOAuthError(reuse, 400, 'invalid_grant', 'reuse');
        if (newest.status === 200 && i % 2 === 0) served.push(newest.json);
      }
      t.diagnostic(`${served.length} of 50 refreshes with the newest token were served (${served.filter((x) => x.after400).length} after the reuse's 400)`);
      await new Promise((r) => setTimeout(r, 500)); // every revocation has long finished
      const survivors = [];
      for (const tok of served) {
        const onRoute = await callRoute(s.url, A, tok.access_token);
        const again = await refresh(s.url, client, tok.refresh_token);
        if (onRoute.status !== 401 || again.status === 200) {
          survivors.push(`${tok.after400 ? 'issued after the 400' : 'issued in parallel'}: route ${onRoute.status}, refresh ${again.status}`);
        }
      }
      assert.equal(survivors.length, 0,
        `${survivors.length} token pairs issued while the grant was being revoked stay valid: ${survivors.join('; ')}`);
    });

    test('Basic credentials with a wrong secret → 401 invalid_client + WWW-Authenticate: Basic', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect(), auth: 'client_secret_basic' });
      assert.ok(client.client_secret);
      const r = await tokenRequest(s.url, { grant_type: 'authorization_code', code: fakeToken('mcpgate_ac_'), code_verifier: makePkce().verifier, redirect_uri: client.redirect_uris[0] }, null, {
        auth: { headers: { authorization: basicAuth(client.client_id, 'wrong-secret') }, fields: {} },
      });
      assertOAuthError(r, 401, 'invalid_client', 'wrong secret');
      assert.match(r.headers.get('www-authenticate') || '', /^Basic\b/);
    });

    test('no form content type → 400 invalid_request', async () => {
      const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: fakeToken('mcpgate_rt_'), client_id: 'x' }).toString();
      const none = await rawHttp({ port: s.port, method: 'POST', path: '/token', body });
      assert.equal(none.status, 400, none.body);
      assert.equal(none.json().error, 'invalid_request');
      const json = await tokenRequest(s.url, { grant_type: 'refresh_token' }, null, { contentType: 'application/json' });
      assertOAuthError(json, 400, 'invalid_request', 'application/json body');
    });

    test('unsupported grant_type → 400 unsupported_grant_type', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      for (const gt of ['password', 'client_credentials', 'urn:ietf:params:oauth:grant-type:device_code']) {
        const r = await tokenRequest(s.url, { grant_type: gt, username: 'alice', password: 'x' }, client);
        assertOAuthError(r, 400, 'unsupported_grant_type', gt);
      }
    });
  });

  // ---- /revoke -----------------------------------------------------------------------------

  describe('/revoke', () => {
    test('unknown or foreign-looking tokens → 200', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      for (const token of [fakeToken('mcpgate_at_'), fakeToken('mcpgate_rt_'), 'not-even-a-token']) {
        const r = await revoke(s.url, client, token);
        assert.equal(r.status, 200, `${token.slice(0, 12)}: ${r.status} ${r.text}`);
      }
    });

    test('revoking a refresh token revokes its grant: the access token is refused on the route', async () => {
      const { client, tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() } });
      const ok = await callRoute(s.url, A, tokens.access_token);
      assert.ok(ok.status !== 401 && ok.status !== 403, `before: ${ok.status}`);
      const r = await revoke(s.url, client, tokens.refresh_token, { token_type_hint: 'refresh_token' });
      assert.equal(r.status, 200);
      const rt = await refresh(s.url, client, tokens.refresh_token);
      assertOAuthError(rt, 400, 'invalid_grant', 'revoked refresh token');
      const after = await waitRefused(s.url, A, tokens.access_token);
      assert.equal(after.status, 401, `after: ${after.status}`);
      assert.equal(after.challenge?.params.error, 'invalid_token');
    });
  });

  // ---- /register -----------------------------------------------------------------------------

  describe('/register', () => {
    test('javascript:, data:, non-loopback http redirect URIs → 400 invalid_redirect_uri', async () => {
      for (const uri of ['javascript:alert(1)', 'data:text/html,<b>hi</b>', 'http://evil.example/cb',
        'http://127.0.0.1.evil.example/cb', 'http://localhost.evil.example/cb', 'https://good.example/cb#frag']) {
        const r = await registerClient(s.url, clientMetadata({ redirectUri: uri }));
        assertOAuthError(r, 400, 'invalid_redirect_uri', uri);
      }
    });

    test('a body over registration.max_body (4 KiB; 8 KiB sent) → 413 with a JSON body', async () => {
      const meta = clientMetadata({ redirectUri: nextRedirect(), software_id: 'x'.repeat(200) });
      meta.contacts = [];
      const bare = JSON.stringify({ ...meta, padding: '' });
      const body = JSON.stringify({ ...meta, padding: 'p'.repeat(8192 - bare.length) });
      assert.equal(body.length, 8192);
      const r = await registerClient(s.url, null, { body });
      assert.equal(r.status, 413, r.text);
      assert.match(r.headers.get('content-type') || '', /^application\/json/);
      assert.equal(typeof r.json?.error, 'string', `JSON body: ${r.text}`);
    });

    test('wrong content type → 400', async () => {
      const r = await registerClient(s.url, clientMetadata({ redirectUri: nextRedirect() }), { contentType: 'text/plain' });
      assertOAuthError(r, 400, 'invalid_client_metadata', 'text/plain');
      const f = await registerClient(s.url, null, { contentType: 'application/x-www-form-urlencoded', body: 'redirect_uris=http://127.0.0.1/cb' });
      assertOAuthError(f, 400, 'invalid_client_metadata', 'form body');
    });

    test('registration rate (3/min) → the 4th registration gets 429 with Retry-After', async () => {
      rl = await startOAuthStack({ redis: s.redis, idp: s.idp, oauth: { registration: { rate: '3/min' } } });
      gateways.push(rl.gw);
      for (let i = 1; i <= 3; i++) {
        const r = await registerClient(rl.url, clientMetadata({ redirectUri: nextRedirect() }));
        assert.equal(r.status, 201, `registration ${i}: ${r.status} ${r.text}`);
      }
      const r = await registerClient(rl.url, clientMetadata({ redirectUri: nextRedirect() }));
      assert.equal(r.status, 429, r.text);
      const retry = Number(r.headers.get('retry-after'));
      assert.ok(Number.isInteger(retry) && retry > 0 && retry <= 60, `Retry-After: ${r.headers.get('retry-after')}`);
      assert.equal(typeof r.json?.error, 'string');
    });
  });

  // ---- the bearer check on the routes --------------------------------------------------------

  describe('routes', () => {
    test('no token → 401 with resource_metadata and scope, no error attribute', async () => {
      const r = await callRoute(s.url, A, null);
      assert.equal(r.status, 401, `${r.status} ${r.text.slice(0, 200)}`);
      assert.equal(r.www, `Bearer resource_metadata="${s.url}/.well-known/oauth-protected-resource${A}", scope="mcp:tools"`);
      assert.equal(r.challenge.params.error, undefined);
    });

    test('a token in the query string → 400 with error="invalid_request"', async () => {
      const { tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() } });
      const r = await callRoute(s.url, A, null, { query: `access_token=${encodeURIComponent(tokens.access_token)}` });
      assert.equal(r.status, 400, `${r.status} ${r.text.slice(0, 200)}`);
      assert.match(r.www || '', /^Bearer /);
      assert.equal(r.challenge?.params.error, 'invalid_request');
    });

    test('a token bound to route A is refused on route B (401 invalid_token)', async () => {
      const { tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() }, resource: `${s.url}${A}` });
      const onA = await callRoute(s.url, A, tokens.access_token);
      assert.ok(onA.status !== 401 && onA.status !== 403, `on A: ${onA.status} ${onA.www || ''}`);
      const onB = await callRoute(s.url, B, tokens.access_token);
      assert.equal(onB.status, 401, `on B: ${onB.status} ${onB.text.slice(0, 200)}`);
      assert.equal(onB.challenge?.params.error, 'invalid_token');
      assert.equal(onB.challenge?.params.resource_metadata, `${s.url}/.well-known/oauth-protected-resource${B}`);
    });

    test('other credentials on the route: a refresh token, Basic, a made-up token → 401 invalid_token; two Authorization headers → 400', async () => {
      const { tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() } });
      const cases = [
        ['refresh token as bearer', { authorization: `Bearer ${tokens.refresh_token}` }],
        ['Basic scheme', { authorization: basicAuth('alice', 'alice-pass').replace('alice-pass', 'x') }],
        ['unknown access token', { authorization: `Bearer ${fakeToken('mcpgate_at_')}` }],
        ['not a token', { authorization: 'Bearer hello' }],
      ];
      for (const [what, headers] of cases) {
        const r = await callRoute(s.url, A, null, { headers });
        assert.equal(r.status, 401, `${what}: ${r.status}`);
        assert.equal(r.challenge?.params.error, 'invalid_token', `${what}: ${r.www}`);
        assert.equal(r.challenge?.params.resource_metadata, `${s.url}/.well-known/oauth-protected-resource${A}`);
      }
      const lower = await callRoute(s.url, A, null, { headers: { authorization: `bearer ${tokens.access_token}` } });
      assert.ok(lower.status !== 401 && lower.status !== 403, `"bearer" in lower case (the scheme is case-insensitive): ${lower.status}`);
      const body = '{"jsonrpc":"2.0","id":1,"method":"ping"}';
      const raw = await rawRequest(s.port, [`POST ${A} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n`
        + `Accept: application/json, text/event-stream\r\nAuthorization: Bearer ${tokens.access_token}\r\n`
        + `Authorization: Bearer ${fakeToken('mcpgate_at_')}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`]);
      const res = parseRawResponse(raw);
      assert.equal(res.status, 400, raw.slice(0, 300));
      assert.match(res.headers['www-authenticate'] || '', /error="invalid_request"/);
    });

    test('a token for another resource at /token → invalid_grant (RFC 8707)', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const f = await login(s, { client, resource: `${s.url}${A}` });
      const r = await exchangeCode(s.url, client, f, { resource: `${s.url}${B}` });
      assertOAuthError(r, 400, 'invalid_grant', 'resource differs');
    });
  });

  // ---- protocol details ----------------------------------------------------------------------

  describe('protocol details', () => {
    test('registration: 201 echoes the metadata, no-store; a secret only for confidential clients', async () => {
      const uri = nextRedirect();
      const pub = await registerClient(s.url, clientMetadata({ redirectUri: uri, name: 'Echo' }));
      assert.equal(pub.status, 201, pub.text);
      assert.equal(pub.headers.get('cache-control'), 'no-store');
      assert.deepEqual(pub.json.redirect_uris, [uri]);
      assert.equal(pub.json.client_name, 'Echo');
      assert.equal(pub.json.token_endpoint_auth_method, 'none');
      assert.deepEqual(pub.json.grant_types, ['authorization_code', 'refresh_token']);
      assert.equal(pub.json.client_secret, undefined);
      assert.ok(Number.isInteger(pub.json.client_id_issued_at));
      const conf = await registerClient(s.url, clientMetadata({ redirectUri: uri, auth: 'client_secret_post' }));
      assert.equal(conf.status, 201, conf.text);
      assert.equal(conf.json.token_endpoint_auth_method, 'client_secret_post');
      assert.match(conf.json.client_secret, /^[A-Za-z0-9_-]{32,}$/);
      assert.equal(conf.json.client_secret_expires_at, 0);
      for (const bad of [{ token_endpoint_auth_method: 'private_key_jwt' }, { grant_types: ['implicit'] }, { scope: 'mcp:tools nope' },
        { client_uri: 'javascript:alert(1)' }, { logo_uri: 'http://evil.example/logo.png' }, { client_name: 'x'.repeat(201) }]) {
        const r = await registerClient(s.url, { ...clientMetadata({ redirectUri: uri }), ...bad });
        assertOAuthError(r, 400, 'invalid_client_metadata', JSON.stringify(bad));
      }
      const dup = await registerClient(s.url, null, { body: `{"redirect_uris":["${uri}"],"redirect_uris":["https://evil.example/cb"]}` });
      assertOAuthError(dup, 400, 'invalid_client_metadata', 'duplicate keys');
    });

    test('client authentication: public client with a secret, confidential client without one or with the wrong method → 401 invalid_client', async () => {
      const pub = await newClient(s.url, { redirectUri: nextRedirect() });
      const conf = await newClient(s.url, { redirectUri: nextRedirect(), auth: 'client_secret_basic' });
      const fields = { grant_type: 'refresh_token', refresh_token: fakeToken('mcpgate_rt_') };
      const cases = [
        ['public client sending a secret', { headers: {}, fields: { client_id: pub.client_id, client_secret: 'x' } }],
        ['confidential client without a secret', { headers: {}, fields: { client_id: conf.client_id } }],
        ['basic client using client_secret_post', { headers: {}, fields: { client_id: conf.client_id, client_secret: conf.client_secret } }],
        ['unknown client', { headers: {}, fields: { client_id: 'no-such-client' } }],
      ];
      for (const [what, auth] of cases) {
        const r = await tokenRequest(s.url, fields, null, { auth });
        assertOAuthError(r, 401, 'invalid_client', what);
      }
      const repeated = await http(`${s.url}/token`, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `grant_type=refresh_token&client_id=${pub.client_id}&refresh_token=a&refresh_token=b`,
      });
      assertOAuthError(repeated, 400, 'invalid_request', 'repeated parameter');
    });

    test('a client without the refresh_token grant gets no refresh token and may not refresh', async () => {
      const { client, tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect(), refresh: false } });
      assert.match(tokens.access_token, /^mcpgate_at_/);
      assert.equal(tokens.refresh_token, undefined);
      const r = await refresh(s.url, client, fakeToken('mcpgate_rt_'));
      assertOAuthError(r, 400, 'unauthorized_client', 'refresh without the grant');
    });

    test('a code issued to one client is refused to another (invalid_grant)', async () => {
      const a = await newClient(s.url, { redirectUri: nextRedirect() });
      const b = await newClient(s.url, { redirectUri: a.redirect_uris[0] });
      const f = await login(s, { client: a });
      const r = await exchangeCode(s.url, b, f);
      assertOAuthError(r, 400, 'invalid_grant', "another client's code");
    });

    test('revoking another client\'s token: 200, and the token stays valid', async () => {
      const { client, tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() } });
      const other = await newClient(s.url, { redirectUri: nextRedirect() });
      assert.equal((await revoke(s.url, other, tokens.refresh_token)).status, 200);
      const r = await refresh(s.url, client, tokens.refresh_token);
      assert.equal(r.status, 200, `the owner still refreshes: ${r.status} ${r.text}`);
    });

    test('a refused refresh request (scope too wide) does not destroy the refresh token', async () => {
      const { client, tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() } });
      const wide = await refresh(s.url, client, tokens.refresh_token, { scope: 'mcp:tools mcp:admin' });
      assertOAuthError(wide, 400, 'invalid_scope', 'scope wider than granted');
      const r = await refresh(s.url, client, tokens.refresh_token);
      assert.equal(r.status, 200, `the same refresh token right after the refused request: ${r.status} ${r.text}`);
    });

    test('a refresh token presented by another client is refused, and the owner can still use it', async () => {
      const { client, tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() } });
      const thief = await newClient(s.url, { redirectUri: nextRedirect() });
      const stolen = await refresh(s.url, thief, tokens.refresh_token);
      assertOAuthError(stolen, 400, 'invalid_grant', 'another client');
      const r = await refresh(s.url, client, tokens.refresh_token);
      assert.equal(r.status, 200, `the owner refreshing after the refused attempt: ${r.status} ${r.text}`);
    });

    test('authorization without redirect_uri (one registered): the token request may omit it too (RFC 6749 §4.1.3)', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      const f = await login(s, { client, redirectUri: null });
      assert.match(f.params.get('code') || '', /^mcpgate_ac_/, f.url);
      const r = await tokenRequest(s.url, { grant_type: 'authorization_code', code: f.params.get('code'), code_verifier: f.pkce.verifier }, client);
      assert.equal(r.status, 200, `code exchange without redirect_uri: ${r.status} ${r.text}`);
    });

    test('a redirect URI with a query keeps it; errors are appended', async () => {
      const uri = `${nextRedirect()}?tenant=a%20b`;
      const client = await newClient(s.url, { redirectUri: uri });
      const r = await http(authorizeUrl(s.url, client, { responseType: 'token', state: 'q' }));
      assert.equal(r.status, 302);
      const loc = new URL(r.location);
      assert.equal(loc.searchParams.get('tenant'), 'a b');
      assert.equal(loc.searchParams.get('error'), 'unsupported_response_type');
      assert.equal(loc.searchParams.get('state'), 'q');
      assert.equal(loc.searchParams.get('iss'), s.url);
    });
  });

  describe('a remembered approval covers what was approved and nothing more (F2, F9, F14)', () => {
    let st;
    const ADMIN = 'mcp:admin';
    before(async () => {
      st = await startOAuthStack({
        redis: s.redis,
        oauth: { scopes: { 'mcp:tools': 'Use the tools', [ADMIN]: 'Administer the servers' }, registration: { rate: '1000/min' } },
      });
      gateways.push(st.gw);
    });
    const rootUrl = () => st.url;
    const routeA = () => `${st.url}${A}`;
    const routeB = () => `${st.url}${B}`;
    /** 302 to the IdP (remembered) or 200 with the consent page. */
    async function outcome(client, jar, opts) {
      const r = await http(authorizeUrl(st.url, client, opts), { jar });
      if (r.status === 302 && r.location.startsWith(`${st.idp.base}/oauth2/authorize?`)) return 'remembered';
      if (r.status === 200 && /wants to use your account/.test(r.text)) return 'page';
      throw new Error(`unexpected /authorize answer ${r.status} ${r.location || r.text.slice(0, 200)}`);
    }

    test('the attack of F2: a second registered redirect URI, no scope, another route, a wider scope: each shows the page', async () => {
      const loop = nextRedirect();
      const two = await registerClient(st.url, { ...clientMetadata({ redirectUri: loop, name: 'Claude Desktop' }), redirect_uris: [loop, 'https://evil.example/cb'] });
      assert.equal(two.status, 201, two.text);
      const client = two.json;
      const jar = new CookieJar();
      await login(st, { client, jar, scope: 'mcp:tools', resource: routeA() });

      // What was approved: remembered, also on another loopback port (RFC 8252 §7.3).
      assert.equal(await outcome(client, jar, { scope: 'mcp:tools', resource: routeA() }), 'remembered');
      const otherPort = loop.replace(/:(\d+)\//, (_, p) => `:${Number(p) + 1000}/`);
      assert.equal(await outcome(client, jar, { scope: 'mcp:tools', resource: routeA(), redirectUri: otherPort }), 'remembered');

      // Anything new: the page.
      const evil = await http(authorizeUrl(st.url, client, { scope: 'mcp:tools', resource: routeA(), redirectUri: 'https://evil.example/cb' }), { jar });
      assert.equal(evil.status, 200, `another redirect URI: ${evil.status} ${evil.location || ''}`);
      assert.match(evil.text, /id="redirect-host">evil\.example</, 'the page names the new redirect host');
      assert.equal(await outcome(client, jar, { resource: routeA() }), 'page', 'no scope means every scope: wider');
      assert.equal(await outcome(client, jar, { scope: `mcp:tools ${ADMIN}`, resource: routeA() }), 'page', 'step-up to mcp:admin');
      assert.equal(await outcome(client, jar, { scope: 'mcp:tools', resource: routeB() }), 'page', 'another route');
      assert.equal(await outcome(client, jar, { scope: 'mcp:tools', resource: rootUrl() }), 'page', 'every route');
      assert.equal(await outcome(client, jar, { scope: 'mcp:tools' }), 'page', 'no resource: every route');
      // The first approval still holds.
      assert.equal(await outcome(client, jar, { scope: 'mcp:tools', resource: routeA() }), 'remembered');
    });

    test('approving every route and both scopes covers each route and each subset; approvals for one key add up', async () => {
      const client = await newClient(st.url, { redirectUri: nextRedirect() });
      const jar = new CookieJar();
      await login(st, { client, jar, scope: 'mcp:tools', resource: routeA() });
      await login(st, { client, jar, scope: ADMIN, resource: routeA() });
      assert.equal(await outcome(client, jar, { scope: `mcp:tools ${ADMIN}`, resource: routeA() }), 'remembered', 'both approvals for route A add up');
      assert.equal(await outcome(client, jar, { scope: `mcp:tools ${ADMIN}`, resource: routeB() }), 'page');

      await login(st, { client, jar, resource: rootUrl() }); // no scope: both
      for (const resource of [routeA(), routeB(), rootUrl(), `${rootUrl()}/`, undefined])
        for (const scope of ['mcp:tools', ADMIN, `${ADMIN} mcp:tools`, undefined])
          assert.equal(await outcome(client, jar, { scope, resource }), 'remembered', `${scope} on ${resource}`);
    });

    test('a forged or edited remembered-approvals cookie is ignored', async () => {
      const client = await newClient(st.url, { redirectUri: nextRedirect() });
      const jar = new CookieJar();
      await login(st, { client, jar, scope: 'mcp:tools', resource: routeA() });
      const cookie = jar.header(`${st.url}/authorize`).split('; ').find((c) => c.startsWith('mcpgate_consent='));
      assert.ok(cookie, 'the approval cookie is set');
      const value = cookie.slice('mcpgate_consent='.length);
      const [entries, mac] = [value.slice(0, value.lastIndexOf('.')), value.slice(value.lastIndexOf('.') + 1)];
      const [key, , until] = entries.split(',')[0].split('~');
      const widened = `${key}~${Buffer.from(`mcp:tools ${ADMIN}`).toString('base64url')}~${until}`;
      const r = await http(authorizeUrl(st.url, client, { scope: `mcp:tools ${ADMIN}`, resource: routeA() }), {
        headers: { cookie: `mcpgate_consent=${widened}.${mac}` },
      });
      assert.equal(r.status, 200, 'a widened entry with the old MAC is not an approval');
    });

    test('F9: consent for the gateway root, or for no resource, lists every OAuth route', async () => {
      const client = await newClient(st.url, { redirectUri: nextRedirect() });
      for (const resource of [rootUrl(), `${rootUrl()}/`, undefined]) {
        const { page } = await consentPage(st.url, client, new CookieJar(), { resource });
        assert.match(page.text, /Shows who mcpgate says you are/, `${resource}: route A listed`);
        assert.match(page.text, /<code>\/mcp\/other<\/code>/, `${resource}: route B listed`);
      }
      const { page } = await consentPage(st.url, client, new CookieJar(), { resource: routeA() });
      assert.doesNotMatch(page.text, /<code>\/mcp\/other<\/code>/, 'a route-bound request lists only its route');
    });

    test('F14: Unicode hosts are refused at registration (punycode is shown as is); bidi controls in client_name are refused', async () => {
      for (const uri of ['https://\u0430pple.com/cb', 'https://apple.com/\u00e9', 'http://127.0.0.1/\u202ecb']) {
        const r = await registerClient(st.url, clientMetadata({ redirectUri: uri }));
        assertOAuthError(r, 400, 'invalid_redirect_uri', uri);
      }
      const puny = await newClient(st.url, { redirectUri: 'https://xn--pple-43d.com/cb' });
      const { page } = await consentPage(st.url, puny, new CookieJar());
      assert.match(page.text, /id="redirect-host">xn--pple-43d\.com</);
      for (const name of ['Good\u202eelgooG', 'a\u2066b', 'line\u2028two', 'bell\u0007', 'c1\u0085']) {
        const r = await registerClient(st.url, clientMetadata({ redirectUri: nextRedirect(), name }));
        assertOAuthError(r, 400, 'invalid_client_metadata', JSON.stringify(name));
      }
      const site = await registerClient(st.url, clientMetadata({ redirectUri: nextRedirect(), client_uri: 'https://\u0430pple.com/' }));
      assertOAuthError(site, 400, 'invalid_client_metadata', 'Unicode client_uri');
      const fine = await registerClient(st.url, clientMetadata({ redirectUri: nextRedirect(), name: 'Zürich 東京 ✓' }));
      assert.equal(fine.status, 201, fine.text);
    });
  });

  describe('a stricter configuration (two scopes, code_ttl 1s, require_resource, consent never remembered)', () => {
    let st;
    before(async () => {
      st = await startOAuthStack({
        redis: s.redis,
        oauth: {
          scopes: { 'mcp:tools': 'Use the tools', 'mcp:read': 'Read resources' },
          code_ttl: '1s',
          access_token_ttl: '2s',
          require_resource: true,
          consent: { remember: '0s' },
        },
      });
      gateways.push(st.gw);
    });

    test('require_resource: an authorization without resource → invalid_target', async () => {
      const client = await newClient(st.url, { redirectUri: nextRedirect() });
      const r = await http(authorizeUrl(st.url, client, { state: 'rr' }));
      assertErrorRedirect(r, client, 'invalid_target', 'rr', st.url, 'no resource');
    });

    test('consent.remember 0s: the consent page comes every time', async () => {
      const client = await newClient(st.url, { redirectUri: nextRedirect() });
      const jar = new CookieJar();
      await login(st, { client, jar, resource: `${st.url}${A}` });
      const again = await http(authorizeUrl(st.url, client, { resource: `${st.url}${A}` }), { jar });
      assert.equal(again.status, 200, `second authorization: ${again.status} ${again.location || ''}`);
    });

    test('expiry: a code after code_ttl (1s) → invalid_grant; an access token after access_token_ttl (2s) → 401 even when cached', async () => {
      const { tokens } = await obtainTokens(st, { clientOpts: { redirectUri: nextRedirect() }, resource: `${st.url}${A}` });
      assert.equal(tokens.expires_in, 2);
      const fresh = await callRoute(st.url, A, tokens.access_token); // validated and cached
      assert.ok(fresh.status !== 401 && fresh.status !== 403, `fresh token: ${fresh.status}`);
      const client = await newClient(st.url, { redirectUri: nextRedirect() });
      const f = await login(st, { client, resource: `${st.url}${A}` });
      await new Promise((r) => setTimeout(r, 2200));
      const r = await exchangeCode(st.url, client, f);
      assertOAuthError(r, 400, 'invalid_grant', 'expired code');
      const old = await callRoute(st.url, A, tokens.access_token);
      assert.equal(old.status, 401, `expired access token: ${old.status}`);
      assert.equal(old.challenge?.params.error, 'invalid_token');
    });

    test('refresh with a narrower scope narrows that access token only; the refresh token keeps the granted scope (RFC 6749 §6)', async () => {
      const { client, tokens } = await obtainTokens(st, {
        clientOpts: { redirectUri: nextRedirect() }, scope: 'mcp:tools mcp:read', resource: `${st.url}${A}`,
      });
      assert.equal(tokens.scope, 'mcp:tools mcp:read');
      const narrow = await refresh(st.url, client, tokens.refresh_token, { scope: 'mcp:read' });
      assert.equal(narrow.status, 200, narrow.text);
      assert.equal(narrow.json.scope, 'mcp:read');
      const full = await refresh(st.url, client, narrow.json.refresh_token);
      assert.equal(full.status, 200, full.text);
      assert.equal(full.json.scope, 'mcp:tools mcp:read', 'a refresh without scope gets the originally granted scope');
    });
  });

  // ---- failures of what the gateway depends on -----------------------------------------------

  describe('dependencies down', () => {
    test('IdP unreachable: /readyz 503, and approving consent → 503 "Sign-in is unavailable"', async () => {
      const deadPort = await freePort();
      dead = await startOAuthStack({ redis: s.redis, idp: null, issuer: `http://127.0.0.1:${deadPort}/t/demo/oauth2/token`, waitReady: false });
      gateways.push(dead.gw);
      const ready = await http(`${dead.url}/readyz`);
      assert.equal(ready.status, 503, ready.text);
      const client = await newClient(dead.url, { redirectUri: nextRedirect() });
      const jar = new CookieJar();
      const { fields } = await consentPage(dead.url, client, jar, { state: 'dead' });
      const r = await postConsent(dead.url, { ...fields, decision: 'approve' }, { jar });
      assertHtmlPage(r, 503, 'approve with the IdP down');
      assert.match(r.text, /Sign-in is unavailable/);
    });

    test('Redis stopped → /token and /register 503 temporarily_unavailable + Retry-After; back within 10 s of a restart', async () => {
      const client = await newClient(s.url, { redirectUri: nextRedirect() });
      await s.redis.stop();
      const tokenDown = () => refresh(s.url, client, fakeToken('mcpgate_rt_'));
      const registerDown = () => registerClient(s.url, clientMetadata({ redirectUri: nextRedirect() }));
      let t;
      await waitFor(async () => (t = await tokenDown()).status === 503, { timeoutMs: 5000, what: '/token 503' }).catch(() => {});
      assertOAuthError(t, 503, 'temporarily_unavailable', '/token with redis down');
      assert.ok(Number(t.headers.get('retry-after')) > 0, `Retry-After ${t.headers.get('retry-after')}`);
      const g = await registerDown();
      assertOAuthError(g, 503, 'temporarily_unavailable', '/register with redis down');
      assert.ok(Number(g.headers.get('retry-after')) > 0, `Retry-After ${g.headers.get('retry-after')}`);

      await s.redis.restart();
      const t0 = Date.now();
      let reg;
      await waitFor(async () => (reg = await registerDown()).status === 201, { timeoutMs: 10000, intervalMs: 200, what: '/register 201 after the restart' })
        .catch(() => {});
      assert.equal(reg.status, 201, `/register ${Date.now() - t0} ms after the restart: ${reg.status} ${reg.text}`);
      // The restarted redis is empty: a new client goes through the whole flow again.
      const { tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() } });
      assert.match(tokens.access_token, /^mcpgate_at_/);
      assert.ok(Date.now() - t0 < 10000, `working again after ${Date.now() - t0} ms`);
    });

    test('after a Redis restart, a revocation still reaches the bearer cache', async () => {
      const { client, tokens } = await obtainTokens(s, { clientOpts: { redirectUri: nextRedirect() } });
      const ok = await callRoute(s.url, A, tokens.access_token); // cached now
      assert.ok(ok.status !== 401 && ok.status !== 403, `before: ${ok.status}`);
      assert.equal((await revoke(s.url, client, tokens.access_token)).status, 200);
      const r = await waitRefused(s.url, A, tokens.access_token, 2000);
      assert.equal(r.status, 401, `revoked access token (cached before) on the route: ${r.status}`);
    });
  });

  // ---- the end ------------------------------------------------------------------------------

  test('gateways: exit 0 on SIGTERM, no sanitizer report, no secrets in their logs', async () => {
    for (const gw of gateways) {
      const rc = await gw.stop();
      assert.equal(rc, 0, `gateway on ${gw.port}: exit status ${rc}`);
      assertNoSecretsInLog(gw.stderr(), [IDP_CLIENT_SECRET]);
    }
  });
});
