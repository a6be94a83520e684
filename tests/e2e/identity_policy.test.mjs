// Identity and policy, end to end, with the official MCP SDK client and server:
// tool rules per role and scope (filtered tools/list, refused calls that look
// exactly like unknown tools, the 403 insufficient_scope step-up challenge and
// the SDK's reaction to it), the identity that reaches upstreams (STDIO
// environment and _meta, HTTP headers, the signed X-MCP-Identity JWT verified
// with jose against the gateway's JWKS), signing-key rotation, sessions owned
// by users, route requirements, and policy changes by SIGHUP.
//
// Stack: a real redis-server, the test IdP (tests/idp, users alice: manager +
// employee, bob: employee), mcpgate under ASan/UBSan (build/san/mcpgate; `make
// san-binary`) with an ES256 identity key from `mcpgate keygen`, the whoami
// example over STDIO and a Streamable HTTP MCP server built with the SDK.
// Tokens come from the real flow: DCR public client → /authorize → consent →
// IdP login → code → /token, with resource = the route URL.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';

import { REPO, assertNoSanitizerReport, withTimeout } from '../lib/harness.mjs';
import {
  CookieJar, FlowProvider, JOSE_FROM, USERS, connect, firstTextJson, jose, keygen, mcpPost, obtainToken,
  SHUTDOWN_GRACE, parseChallenge, rawSession, rpc, startIdentityStack, stopAll,
} from './lib_identity.mjs';

const SDK_VERSION = JSON.parse(fs.readFileSync(
  path.join(REPO, 'tests', 'e2e', 'node_modules', '@modelcontextprotocol', 'sdk', 'package.json'), 'utf8',
)).version;
const T = { timeout: 60000 };

const alice = USERS.alice;
const bob = USERS.bob;

/** Runs P and returns what it threw (fails when it resolves). */
async function rejection(p, what) {
  try {
    const v = await p;
    assert.fail(`${what}: expected an error, got ${JSON.stringify(v).slice(0, 300)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return e;
  }
  return undefined;
}

describe('identity and policy through mcpgate (SDK client and server)', { timeout: 300000 }, () => {
  let s;
  let whoamiUrl;
  let upstreamUrl;
  const jars = { alice: new CookieJar(), bob: new CookieJar() };
  const memo = new Map();
  /** A token for USER bound to ROUTE (a path) with SCOPE: {client, tokens}. */
  async function tok(user, route, scope = 'mcp:tools') {
    const k = `${user} ${route} ${scope}`;
    if (!memo.has(k)) {
      memo.set(k, await obtainToken(s.url, { user, resource: s.routeUrl(route), scope, jar: jars[user] }));
    }
    return memo.get(k);
  }

  before(async () => {
    s = await startIdentityStack();
    whoamiUrl = s.routeUrl('/mcp/whoami');
    upstreamUrl = s.routeUrl('/mcp/upstream');
  });

  after(async () => {
    if (s?.gw && !s.gw.exited) await s.gw.stop().catch(() => {});
    await stopAll();
  });

  // ---- tool rules by role -------------------------------------------------------------------

  test('alice (manager) sees manager_report in tools/list and can call it', T, async () => {
    const { tokens } = await tok('alice', '/mcp/whoami');
    assert.equal(tokens.scope, 'mcp:tools');
    const c = await connect(whoamiUrl, { token: tokens.access_token });
    const { tools } = await c.client.listTools();
    const names = tools.map((t) => t.name);
    assert.ok(names.includes('manager_report'), `tools: ${names}`);
    assert.ok(names.includes('whoami') && names.includes('add'), `tools: ${names}`);
    const r = await c.client.callTool({ name: 'manager_report', arguments: {} });
    assert.ok(!r.isError, JSON.stringify(r));
    assert.match(r.content[0].text, /Quarterly report/);
    await c.close();
  });

  test('bob (employee) does not see manager_report; calling it looks exactly like an unknown tool', T, async () => {
    const { tokens } = await tok('bob', '/mcp/whoami');
    const c = await connect(whoamiUrl, { token: tokens.access_token });
    const { tools } = await c.client.listTools();
    const names = tools.map((t) => t.name);
    assert.ok(!names.includes('manager_report'), `bob must not see manager_report: ${names}`);
    assert.ok(names.includes('whoami') && names.includes('add'), `the rest stays: ${names}`);

    // Through the SDK: the same McpError for the refused and the nonexistent tool.
    const refused = await rejection(c.client.callTool({ name: 'manager_report', arguments: {} }), 'manager_report for bob');
    const unknown = await rejection(c.client.callTool({ name: 'no_such_tool', arguments: {} }), 'no_such_tool');
    for (const e of [refused, unknown]) assert.ok(e instanceof McpError, `an McpError: ${e}`);
    assert.equal(refused.code, -32602);
    assert.equal(unknown.code, -32602);
    assert.equal(refused.message, 'MCP error -32602: Unknown tool: manager_report');
    assert.equal(unknown.message, 'MCP error -32602: Unknown tool: no_such_tool');
    assert.deepEqual(refused.data, unknown.data);
    await c.close();

    // On the wire: status, content type and the error object's shape are the same.
    const sid = await rawSession(whoamiUrl, tokens.access_token);
    const a = await mcpPost(whoamiUrl, rpc('tools/call', { name: 'manager_report', arguments: {} }), { token: tokens.access_token, sessionId: sid });
    const b = await mcpPost(whoamiUrl, rpc('tools/call', { name: 'no_such_tool', arguments: {} }), { token: tokens.access_token, sessionId: sid });
    assert.equal(a.status, b.status, `HTTP status: refused ${a.status}, unknown ${b.status}`);
    assert.equal(a.status, 200);
    assert.equal(a.headers.get('content-type'), b.headers.get('content-type'));
    assert.ok(a.response?.error && b.response?.error, `errors: ${a.text} | ${b.text}`);
    assert.deepEqual(Object.keys(a.response).sort(), Object.keys(b.response).sort(), `${a.text} vs ${b.text}`);
    assert.deepEqual(Object.keys(a.response.error).sort(), Object.keys(b.response.error).sort(), `${a.text} vs ${b.text}`);
    assert.equal(a.response.error.code, b.response.error.code);
    assert.equal(a.response.error.message.replace('manager_report', 'X'), b.response.error.message.replace('no_such_tool', 'X'));
    assert.deepEqual(a.response.error.data, b.response.error.data);
    assert.equal(a.headers.get('www-authenticate'), null);
  });

  // ---- tool rules by scope: the step-up challenge ----------------------------------------------------

  test('add needs mcp:admin: listed for an mcp:tools token; the call gets 403 insufficient_scope', T, async () => {
    const { tokens } = await tok('alice', '/mcp/whoami');
    const c = await connect(whoamiUrl, { token: tokens.access_token });
    const { tools } = await c.client.listTools();
    assert.ok(tools.some((t) => t.name === 'add'), 'add stays visible: it needs only more scope');
    const e = await rejection(c.client.callTool({ name: 'add', arguments: { a: 2, b: 3 } }), 'add with mcp:tools');
    assert.ok(e instanceof StreamableHTTPError, `a StreamableHTTPError: ${e}`);
    assert.equal(e.code, 403);
    const r = c.log.find((x) => x.status === 403);
    assert.ok(r, `a 403 was recorded: ${c.log.map((x) => `${x.method} ${x.status}`).join(', ')}`);
    const www = r.headers.get('www-authenticate');
    const ch = parseChallenge(www);
    assert.equal(ch?.scheme, 'Bearer', www);
    assert.equal(ch.params.error, 'insufficient_scope', www);
    assert.equal(ch.params.scope, 'mcp:tools mcp:admin', www);
    assert.equal(ch.params.resource_metadata, `${s.url}/.well-known/oauth-protected-resource/mcp/whoami`, www);
    assert.match(r.headers.get('content-type') || '', /^application\/json/);
    const body = JSON.parse(r.bodyText);
    assert.equal(body.jsonrpc, '2.0');
    assert.equal(typeof body.error?.code, 'number', r.bodyText);
    await c.close();
  });

  test(`step-up as the SDK client does it (SDK ${SDK_VERSION}): 403 → auth() with the wider scope → add succeeds`, T, async (t) => {
    // A client without the refresh_token grant: see the next test for why.
    const { client, tokens } = await obtainToken(s.url, {
      user: 'alice', resource: whoamiUrl, scope: 'mcp:tools', jar: jars.alice, refresh: false,
    });
    assert.equal(tokens.scope, 'mcp:tools');
    assert.equal(tokens.refresh_token, undefined);
    const provider = new FlowProvider({ base: s.url, client, tokens, user: 'alice', jar: jars.alice });
    const c = await connect(whoamiUrl, { authProvider: provider });
    const sid = c.transport.sessionId;
    assert.ok((await c.client.listTools()).tools.some((x) => x.name === 'add'));

    const first = await rejection(c.client.callTool({ name: 'add', arguments: { a: 2, b: 3 } }), 'add before the step-up');
    const challenged = c.log.find((x) => x.status === 403);
    assert.ok(challenged, 'the gateway answered 403');
    const ch = parseChallenge(challenged.headers.get('www-authenticate'));
    assert.equal(ch.params.error, 'insufficient_scope');
    let driver;
    if (first instanceof UnauthorizedError) {
      // The SDK reacted to the 403 itself: auth() with the challenge's scope, which sent the
      // "browser" to /authorize (our redirectToAuthorization), then UnauthorizedError so that
      // the application finishes with the code (transport.finishAuth) and retries.
      driver = 'the SDK transport (403 insufficient_scope → auth(scope) → redirectToAuthorization)';
      assert.equal(provider.authorizationUrls.length, 1);
    } else {
      // An SDK that does not react to 403: drive auth() with the challenge's scope ourselves.
      driver = `the test (the SDK threw ${first?.constructor?.name}: ${first?.message})`;
      const r = await auth(provider, {
        serverUrl: new URL(whoamiUrl), scope: ch.params.scope, resourceMetadataUrl: new URL(ch.params.resource_metadata),
      });
      assert.equal(r, 'REDIRECT');
    }
    t.diagnostic(`step-up driven by ${driver}`);
    const az = provider.authorizationUrls.at(-1);
    assert.equal(az.origin + az.pathname, `${s.url}/authorize`);
    assert.equal(az.searchParams.get('scope'), 'mcp:tools mcp:admin', 'the challenge scope (old + new)');
    assert.equal(az.searchParams.get('resource'), whoamiUrl);
    assert.ok(provider.lastCode, 'the browser leg came back with a code');

    await c.transport.finishAuth(provider.lastCode);
    const second = provider.tokens();
    assert.notEqual(second.access_token, tokens.access_token);
    assert.deepEqual(second.scope.split(' ').sort(), ['mcp:admin', 'mcp:tools'], `scope: ${second.scope}`);

    const r = await c.client.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
    assert.ok(!r.isError, JSON.stringify(r));
    assert.equal(r.content[0].text, '5');
    assert.equal(c.transport.sessionId, sid, 'the session survives the step-up (same user)');
    await c.close();
  });

  test(`SDK ${SDK_VERSION} step-up when the client holds a refresh token (documents the SDK; refresh never widens scope)`, T, async (t) => {
    // The SDK's auth() prefers a refresh over a new authorization, and a refresh cannot widen a
    // grant (README: scope can only narrow on refresh). Whatever this SDK version does about it,
    // the gateway must not hand out mcp:admin without the user's consent.
    const { client, tokens } = await obtainToken(s.url, { user: 'alice', resource: whoamiUrl, scope: 'mcp:tools', jar: jars.alice });
    assert.ok(tokens.refresh_token, 'this client has the refresh_token grant');
    const provider = new FlowProvider({ base: s.url, client, tokens, user: 'alice', jar: jars.alice });
    const c = await connect(whoamiUrl, { authProvider: provider });
    let outcome;
    try {
      const r = await c.client.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
      outcome = `the call succeeded: ${JSON.stringify(r.content)}`;
    } catch (e) {
      outcome = `${e.constructor.name}: ${e.message}`;
    }
    const refreshes = c.log.filter((x) => x.method === 'POST' && x.url === `${s.url}/token`
      && new URLSearchParams(x.requestBody || '').get('grant_type') === 'refresh_token');
    t.diagnostic(`outcome: ${outcome}; refresh requests: ${refreshes.length}; authorization redirects: ${provider.authorizationUrls.length}`);
    for (const x of refreshes) {
      assert.equal(x.status, 200, `refresh: ${x.status} ${x.bodyText}`);
      assert.equal(new URLSearchParams(x.requestBody).get('scope'), null, 'the SDK sent no scope on refresh');
    }
    if (provider.authorizationUrls.length === 0) {
      // no consent happened: every token the client got must still be mcp:tools only
      for (const tk of provider.tokenHistory) assert.equal(tk.scope, 'mcp:tools', `scope without consent: ${tk.scope}`);
      assert.doesNotMatch(outcome, /succeeded/, 'add must not succeed without a consent for mcp:admin');
    }
    await c.close();
  });

  // ---- the identity the upstreams see -----------------------------------------------------------------

  test("whoami over STDIO: the environment and _meta carry alice's identity; MCP_IDENTITY_JWT is set", T, async () => {
    const { client, tokens } = await tok('alice', '/mcp/whoami');
    const c = await connect(whoamiUrl, { token: tokens.access_token });
    // A client-sent principal in _meta must be replaced by the gateway's.
    const r = await c.client.callTool({
      name: 'whoami', arguments: {}, _meta: { 'io.mcpgate/principal': { sub: 'admin', roles: ['admin'] } },
    });
    assert.ok(!r.isError, JSON.stringify(r));
    const id = r.structuredContent ?? firstTextJson({ content: [r.content[1]] });
    const { env, meta } = id;
    assert.equal(env.sub, alice.sub);
    assert.match(env.sub, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'the IdP UUID sub');
    assert.deepEqual(env.roles, ['manager', 'employee']);
    assert.deepEqual(env.groups, ['staff', 'managers']);
    assert.deepEqual(env.scopes, ['mcp:tools']);
    assert.equal(env.client_id, client.client_id);
    assert.equal(env.name, 'alice');
    assert.equal(env.email, alice.email);
    assert.equal(env.identity_jwt.present, true, 'MCP_IDENTITY_JWT is set');
    assert.ok(env.identity_jwt.length > 100, `JWT length ${env.identity_jwt.length}`);
    assert.deepEqual(env.extra, {}, 'no other MCP_USER_* variables');
    assert.ok(meta, '_meta["io.mcpgate/principal"] is present (identity.meta: true)');
    assert.equal(meta.sub, alice.sub, `the client's _meta principal was replaced: ${JSON.stringify(meta)}`);
    assert.deepEqual(meta.roles, ['manager', 'employee']);
    assert.deepEqual(meta.groups, ['staff', 'managers']);
    assert.equal(meta.scope, 'mcp:tools');
    assert.equal(meta.client_id, client.client_id);
    await c.close();
  });

  let capturedJwt; // X-MCP-Identity seen by the HTTP upstream, for the JWT and rotation tests

  test('headers over the HTTP upstream: identity in; client-sent X-MCP-*, Authorization and Cookie out', T, async () => {
    const { client, tokens } = await tok('alice', '/mcp/upstream');
    const from = s.upstream.requests.length;
    const c = await connect(upstreamUrl, {
      token: tokens.access_token,
      headers: {
        'X-MCP-User-Sub': 'admin',
        'X-MCP-User-Roles': 'admin',
        'X-MCP-Scopes': 'mcp:admin',
        'X-MCP-Identity': 'forged.jwt.value',
        Cookie: 'session=stolen',
      },
    });
    const r = await c.client.callTool({ name: 'headers', arguments: {} });
    assert.ok(!r.isError, JSON.stringify(r));
    const h = firstTextJson(r);
    assert.equal(h['x-mcp-user-sub'], alice.sub);
    assert.equal(h['x-mcp-user-roles'], 'manager,employee');
    assert.equal(h['x-mcp-user-groups'], 'staff,managers');
    assert.equal(h['x-mcp-scopes'], 'mcp:tools');
    assert.equal(h['x-mcp-client-id'], client.client_id);
    assert.equal(h['x-mcp-user-name'], 'alice');
    assert.equal(h['x-mcp-user-email'], alice.email);
    assert.match(h['x-mcp-identity'] || '', /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.ok(!('authorization' in h), `the upstream saw Authorization: ${h.authorization}`);
    assert.ok(!('cookie' in h), `the upstream saw Cookie: ${h.cookie}`);
    capturedJwt = h['x-mcp-identity'];

    // Every request the upstream got for this client, raw: one value per identity header.
    const seen = s.upstream.requests.slice(from);
    assert.ok(seen.length >= 3, `requests: ${seen.length}`);
    for (const q of seen) {
      const raw = [];
      for (let i = 0; i < q.rawHeaders.length; i += 2) raw.push([q.rawHeaders[i].toLowerCase(), q.rawHeaders[i + 1]]);
      const names = raw.map(([n]) => n);
      assert.ok(!names.includes('authorization'), `${q.method}: Authorization reached the upstream`);
      assert.ok(!names.includes('cookie'), `${q.method}: Cookie reached the upstream`);
      assert.deepEqual(raw.filter(([n]) => n === 'x-mcp-user-sub').map(([, v]) => v), [alice.sub], `${q.method} X-MCP-User-Sub`);
      assert.deepEqual(raw.filter(([n]) => n === 'x-mcp-user-roles').map(([, v]) => v), ['manager,employee']);
      assert.deepEqual(raw.filter(([n]) => n === 'x-mcp-scopes').map(([, v]) => v), ['mcp:tools']);
      assert.equal(raw.filter(([n]) => n === 'x-mcp-identity').length, 1);
      assert.ok(!raw.some(([, v]) => v === 'forged.jwt.value' || v === 'admin' || v === 'session=stolen'), `${q.method}: a client value passed`);
    }
    await c.close();
  });

  test('X-MCP-Identity verifies with jose against /.well-known/jwks.json', T, async (t) => {
    t.diagnostic(`jose from ${JOSE_FROM}`);
    assert.ok(capturedJwt, 'needs the previous test');
    const { client } = await tok('alice', '/mcp/upstream');
    const jwksRes = await fetch(`${s.url}/.well-known/jwks.json`);
    assert.equal(jwksRes.status, 200);
    const jwks = await jwksRes.json();
    assert.equal(jwks.keys.length, 1);
    const k = jwks.keys[0];
    assert.equal(k.kty, 'EC');
    assert.equal(k.crv, 'P-256');
    assert.equal(k.kid, s.keys.current.kid, 'the kid keygen printed');
    assert.equal(k.d, undefined, 'no private key material in the JWKS');

    const JWKS = jose.createRemoteJWKSet(new URL(`${s.url}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jose.jwtVerify(capturedJwt, JWKS, {
      issuer: s.url, audience: upstreamUrl, algorithms: ['ES256'],
    });
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(protectedHeader.kid, s.keys.current.kid);
    assert.equal(payload.iss, s.url);
    assert.equal(payload.aud, upstreamUrl);
    assert.equal(payload.sub, alice.sub);
    assert.deepEqual(payload.roles, ['manager', 'employee']);
    assert.deepEqual(payload.groups, ['staff', 'managers']);
    assert.equal(payload.scope, 'mcp:tools');
    assert.equal(payload.client_id, client.client_id);
    assert.equal(typeof payload.jti, 'string');
    assert.ok(payload.exp > payload.iat, `exp ${payload.exp} iat ${payload.iat}`);
    assert.ok(payload.exp - payload.iat <= 300, `lifetime ${payload.exp - payload.iat} s`);
    assert.ok(Math.abs(payload.iat - Date.now() / 1000) < 120, `iat ${payload.iat}`);

    // Bound to its audience, and tamper-evident.
    await assert.rejects(jose.jwtVerify(capturedJwt, JWKS, { issuer: s.url, audience: whoamiUrl }), /aud/);
    const [hd, pl, sig] = capturedJwt.split('.');
    const forged = Buffer.from(JSON.stringify({ ...payload, roles: ['admin'] })).toString('base64url');
    await assert.rejects(jose.jwtVerify(`${hd}.${forged}.${sig}`, JWKS, { issuer: s.url, audience: upstreamUrl }));
    assert.ok(pl);
  });

  test('the HTTP route applies its tool rules too: bob does not see manager_only and cannot call it', T, async () => {
    // DESIGN §7: responses to tools/list from an HTTP upstream are parsed to filter them.
    const bobTok = (await tok('bob', '/mcp/upstream')).tokens.access_token;
    const aliceTok = (await tok('alice', '/mcp/upstream')).tokens.access_token;
    const ca = await connect(upstreamUrl, { token: aliceTok });
    assert.ok((await ca.client.listTools()).tools.some((x) => x.name === 'manager_only'), 'alice sees manager_only');
    await ca.close();
    const cb = await connect(upstreamUrl, { token: bobTok });
    const e = await rejection(cb.client.callTool({ name: 'manager_only', arguments: {} }), 'manager_only for bob');
    assert.ok(e instanceof McpError && e.code === -32602, `refused like an unknown tool: ${e}`);
    const names = (await cb.client.listTools()).tools.map((x) => x.name);
    assert.ok(names.includes('headers'), `tools: ${names}`);
    assert.ok(!names.includes('manager_only'), `bob must not see manager_only in tools/list of the HTTP route: ${names}`);
    await cb.close();
  });

  // ---- sessions and route requirements ----------------------------------------------------------------

  test("sessions belong to users: bob's token on alice's Mcp-Session-Id gets 404 (STDIO and HTTP routes)", T, async () => {
    for (const route of ['/mcp/whoami', '/mcp/upstream']) {
      const url = s.routeUrl(route);
      const aliceTok = (await tok('alice', route)).tokens.access_token;
      const bobTok = (await tok('bob', route)).tokens.access_token;
      const c = await connect(url, { token: aliceTok });
      const sid = c.transport.sessionId;
      assert.ok(sid, `${route}: a session id`);
      const other = await mcpPost(url, rpc('tools/list'), { token: bobTok, sessionId: sid });
      assert.equal(other.status, 404, `${route}: bob on alice's session: ${other.status} ${other.text}`);
      const own = await mcpPost(url, rpc('tools/list'), { token: aliceTok, sessionId: sid });
      assert.equal(own.status, 200, `${route}: alice on her session: ${own.status} ${own.text}`);
      assert.ok(own.response?.result?.tools, own.text);
      await c.close();
    }
  });

  test('a token with less than the child was told (fewer scopes) gets 404 on that session and a session of its own; the wider one keeps it (F10)', T, async () => {
    const wide = (await tok('alice', '/mcp/whoami', 'mcp:tools mcp:admin')).tokens.access_token;
    const narrow = (await tok('alice', '/mcp/whoami', 'mcp:tools')).tokens.access_token;
    const c = await connect(whoamiUrl, { token: wide });
    const sid = c.transport.sessionId;
    const lesser = await mcpPost(whoamiUrl, rpc('tools/list'), { token: narrow, sessionId: sid });
    assert.equal(lesser.status, 404, `the narrower token on the wider session: ${lesser.status} ${lesser.text}`);
    const own = await connect(whoamiUrl, { token: narrow });
    assert.notEqual(own.transport.sessionId, sid, 'a session of its own');
    const r = await own.client.callTool({ name: 'whoami', arguments: {} });
    const id = r.structuredContent ?? firstTextJson({ content: [r.content[1]] });
    assert.deepEqual(id.env.scopes, ['mcp:tools'], `its child was told the narrower scope: ${JSON.stringify(id.env)}`);
    assert.equal((await mcpPost(whoamiUrl, rpc('tools/list'), { token: wide, sessionId: sid })).status, 200);
    await own.close();
    await c.close();
  });

  test('require roles [manager]: bob gets 403 with a JSON-RPC error body; alice gets through', T, async () => {
    const url = s.routeUrl('/mcp/managers');
    const bobTok = (await tok('bob', '/mcp/managers')).tokens.access_token;
    const init = rpc('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });
    const r = await mcpPost(url, init, { token: bobTok });
    assert.equal(r.status, 403, r.text);
    assert.match(r.headers.get('content-type') || '', /^application\/json/);
    const body = JSON.parse(r.text);
    assert.equal(body.jsonrpc, '2.0');
    assert.equal(body.error?.code, -32003, r.text);
    assert.equal(typeof body.error.message, 'string');
    assert.doesNotMatch(r.headers.get('www-authenticate') || '', /insufficient_scope/, 'a role cannot be stepped up');
    assert.equal(r.headers.get('mcp-session-id'), null);

    const aliceTok = (await tok('alice', '/mcp/managers')).tokens.access_token;
    const c = await connect(url, { token: aliceTok });
    const w = await c.client.callTool({ name: 'whoami', arguments: {} });
    assert.equal(w.structuredContent.env.sub, alice.sub);
    await c.close();
  });

  test('require scopes [mcp:admin]: an mcp:tools token gets the 403 insufficient_scope challenge', T, async () => {
    const url = s.routeUrl('/mcp/admin');
    const small = (await tok('alice', '/mcp/admin', 'mcp:tools')).tokens;
    const init = rpc('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });
    const r = await mcpPost(url, init, { token: small.access_token });
    assert.equal(r.status, 403, r.text);
    const ch = parseChallenge(r.headers.get('www-authenticate'));
    assert.equal(ch?.scheme, 'Bearer', r.headers.get('www-authenticate'));
    assert.equal(ch.params.error, 'insufficient_scope');
    assert.equal(ch.params.scope, 'mcp:tools mcp:admin');
    assert.equal(ch.params.resource_metadata, `${s.url}/.well-known/oauth-protected-resource/mcp/admin`);
    assert.equal(JSON.parse(r.text).error?.code, -32003, r.text);

    const big = (await tok('alice', '/mcp/admin', 'mcp:tools mcp:admin')).tokens;
    assert.deepEqual(big.scope.split(' ').sort(), ['mcp:admin', 'mcp:tools']);
    const ok = await mcpPost(url, init, { token: big.access_token });
    assert.equal(ok.status, 200, ok.text);
    assert.ok(ok.headers.get('mcp-session-id'));
  });

  // ---- policy changes, key rotation ------------------------------------------------------------------

  test('SIGHUP: manager_report moved to roles [employee]; bob sees and calls it on a new session', T, async () => {
    const bobTok = (await tok('bob', '/mcp/whoami')).tokens.access_token;
    await s.reload({ managerReportRoles: ['employee'] });
    const c = await connect(whoamiUrl, { token: bobTok });
    const names = (await c.client.listTools()).tools.map((x) => x.name);
    assert.ok(names.includes('manager_report'), `after the reload bob sees manager_report: ${names}`);
    const r = await c.client.callTool({ name: 'manager_report', arguments: {} });
    assert.ok(!r.isError, JSON.stringify(r));
    assert.match(r.content[0].text, /Quarterly report/);
    await c.close();
    assert.ok(!s.gw.exited, 'the gateway still runs');
    assertNoSanitizerReport(s.gw.stderr());
  });

  test('key rotation: new signing key + previous_key_file: an old JWT still verifies, new JWTs carry the new kid', T, async () => {
    assert.ok(capturedJwt, 'needs the headers test');
    const oldKid = s.keys.current.kid;
    const oldFile = s.keys.current.file;
    const newFile = path.join(s.dir, 'id2.pem');
    const newKid = await keygen(newFile);
    assert.notEqual(newKid, oldKid);
    const rc = await s.restart({ signingKey: newFile, previousKey: oldFile });
    assert.equal(rc, 0, `the first gateway exited with ${rc}`);
    s.keys = { current: { file: newFile, kid: newKid }, previous: { file: oldFile, kid: oldKid } };

    const jwks = await (await fetch(`${s.url}/.well-known/jwks.json`)).json();
    assert.deepEqual(jwks.keys.map((k) => k.kid).sort(), [newKid, oldKid].sort(), 'both keys are published');
    for (const k of jwks.keys) assert.equal(k.d, undefined);

    const JWKS = jose.createRemoteJWKSet(new URL(`${s.url}/.well-known/jwks.json`));
    const old = await jose.jwtVerify(capturedJwt, JWKS, { issuer: s.url, audience: upstreamUrl, algorithms: ['ES256'] });
    assert.equal(old.protectedHeader.kid, oldKid);
    assert.equal(old.payload.sub, alice.sub);

    // The token from before the restart still works (grants live in redis).
    const { tokens } = await tok('alice', '/mcp/upstream');
    const c = await connect(upstreamUrl, { token: tokens.access_token });
    const h = firstTextJson(await c.client.callTool({ name: 'headers', arguments: {} }));
    await c.close();
    const fresh = await jose.jwtVerify(h['x-mcp-identity'], JWKS, { issuer: s.url, audience: upstreamUrl, algorithms: ['ES256'] });
    assert.equal(fresh.protectedHeader.kid, newKid, 'new assertions are signed with the new key');
    assert.equal(fresh.payload.sub, alice.sub);
  });

  test('a SIGHUP while an HTTP-upstream initialize is in flight: the session still binds, the gateway survives', T, async () => {
    const { tokens } = await tok('alice', '/mcp/upstream');
    const arrived = s.upstream.delayNextInitialize(1500);
    const init = rpc('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });
    const pending = mcpPost(upstreamUrl, init, { token: tokens.access_token, timeoutMs: 20000 }).catch((e) => e);
    await withTimeout(arrived, 10000, 'the initialize to reach the upstream');
    await s.reload(); // the same configuration, read again: the old one is freed
    const r = await pending;
    if (r instanceof Error || s.gw.exited) {
      const report = s.gw.stderr();
      const at = report.indexOf('ERROR: AddressSanitizer');
      await s.respawn(); // so that the tests after this one run on a live gateway
      assert.fail(`the gateway died during the initialize (${r?.message ?? r?.status}):\n${report.slice(Math.max(0, at - 200), at + 2500)}`);
    }
    assert.equal(r.status, 200, r.text);
    const sid = r.headers.get('mcp-session-id');
    assert.ok(sid, 'a session id');
    const n = await mcpPost(upstreamUrl, { jsonrpc: '2.0', method: 'notifications/initialized' }, { token: tokens.access_token, sessionId: sid });
    assert.equal(n.status, 202, n.text);
    const l = await mcpPost(upstreamUrl, rpc('tools/list'), { token: tokens.access_token, sessionId: sid });
    assert.equal(l.status, 200, l.text);
    assert.ok(!s.gw.exited, `the gateway died:\n${s.gw.stderr().slice(-4000)}`);
    assertNoSanitizerReport(s.gw.stderr());
  });

  test('SIGTERM with an HTTP-upstream GET stream open: the stream ends, exit 0, no sanitizer report', T, async () => {
    const { tokens } = await tok('alice', '/mcp/upstream');
    const sid = await rawSession(upstreamUrl, tokens.access_token);
    const ac = new AbortController();
    const res = await fetch(upstreamUrl, {
      method: 'GET',
      headers: {
        authorization: `Bearer ${tokens.access_token}`, accept: 'text/event-stream',
        'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25',
      },
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') || '', /^text\/event-stream/);
    const reader = res.body.getReader();
    const ended = (async () => {
      try {
        for (;;) if ((await reader.read()).done) return 'ended';
      } catch (e) {
        return `error: ${e.message}`;
      }
    })();
    const t0 = Date.now();
    let rc;
    try {
      rc = await s.gw.stop('SIGTERM', 20000);
    } catch (e) {
      const at = e.message.indexOf('ERROR: AddressSanitizer');
      assert.fail(`the gateway's shutdown (SIGTERM → exit took ${Date.now() - t0} ms, shutdown_grace ${SHUTDOWN_GRACE}): `
        + `${e.message.slice(Math.max(0, at), at + 3000)}`);
    } finally {
      ac.abort();
    }
    const took = Date.now() - t0;
    assert.equal(rc, 0, `exit status ${rc}`);
    await withTimeout(ended, 5000, 'the GET stream to end');
    assert.ok(took < Number.parseInt(SHUTDOWN_GRACE, 10) * 1000,
      `the drain ends the long-lived GET streams at once (README, Signals): it took ${took} ms, shutdown_grace ${SHUTDOWN_GRACE}`);
  });
});
