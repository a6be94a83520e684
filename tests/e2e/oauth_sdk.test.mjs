// The official MCP TypeScript SDK client's own auth() (the code real MCP
// hosts run) against mcpgate and the test IdP: RFC 9728 discovery through
// the route's protected resource metadata, RFC 8414 metadata, dynamic client
// registration, the browser leg (consent page + IdP login, done by the
// browserless client), the code exchange, and refresh-token rotation: for a
// public client (token_endpoint_auth_method none) and a confidential one
// (client_secret_basic).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { UnauthorizedError, auth, refreshAuthorization } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InvalidGrantError } from '@modelcontextprotocol/sdk/server/auth/errors.js';

import {
  MemoryOAuthProvider, USERS, assertNoSecretsInLog, callRoute, recordingFetch, startOAuthStack, waitRefused,
} from '../lib/oauth.mjs';

const ROUTE = '/mcp/whoami';

describe('the MCP SDK client auth() against mcpgate', () => {
  let s;
  let serverUrl;

  before(async () => {
    s = await startOAuthStack();
    serverUrl = s.routeUrl(ROUTE);
  });

  after(async () => {
    // Whatever happened above, stop the gateway (the harness would too, but
    // the exit code and the sanitizer check are asserted in the last test).
    if (s && !s.gw.exited) await s.gw.stop().catch(() => {});
  });

  for (const kind of ['public', 'confidential']) {
    describe(`${kind} client`, () => {
      const log = [];
      const fetchFn = recordingFetch(log);
      let provider;
      let first; // the first token response

      test('auth() discovers through the route PRM, registers (DCR) and redirects to /authorize', async () => {
        const redirectUrl = `http://127.0.0.1:${kind === 'public' ? 33418 : 33419}/oauth/callback`;
        provider = new MemoryOAuthProvider({
          base: s.url,
          redirectUrl,
          metadata: {
            client_name: `SDK ${kind} client`,
            redirect_uris: [redirectUrl],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: kind === 'public' ? 'none' : 'client_secret_basic',
          },
        });
        const r = await auth(provider, { serverUrl, fetchFn });
        assert.equal(r, 'REDIRECT');

        // Discovery: the route's path-suffixed PRM first, then RFC 8414 at the issuer.
        const prmUrl = `${s.url}/.well-known/oauth-protected-resource${ROUTE}`;
        assert.equal(log[0].url, prmUrl, `first request: ${log[0].url}`);
        const prm = await (await fetch(prmUrl)).json();
        assert.equal(prm.resource, serverUrl, 'PRM resource is the exact route URL');
        assert.deepEqual(prm.authorization_servers, [s.url]);
        const asm = log.find((e) => e.url === `${s.url}/.well-known/oauth-authorization-server`);
        assert.ok(asm, `AS metadata fetched; requests: ${log.map((e) => `${e.method} ${e.url}`).join(', ')}`);

        // DCR happened, with our metadata.
        const reg = log.find((e) => e.method === 'POST' && e.url === `${s.url}/register`);
        assert.ok(reg, 'a registration request was sent');
        assert.equal(JSON.parse(reg.requestBody).token_endpoint_auth_method, kind === 'public' ? 'none' : 'client_secret_basic');
        assert.equal(provider.savedClients.length, 1);
        const ci = provider.client;
        assert.match(ci.client_id, /^[A-Za-z0-9_-]{16,}$/);
        assert.deepEqual(ci.redirect_uris, [redirectUrl]);
        assert.equal(ci.token_endpoint_auth_method, kind === 'public' ? 'none' : 'client_secret_basic');
        if (kind === 'public') assert.equal(ci.client_secret, undefined, 'no secret for a public client');
        else assert.match(ci.client_secret, /^[A-Za-z0-9_-]{32,}$/, 'DCR issued a secret');

        // The authorization request the SDK built.
        const az = provider.authorizationUrls[0];
        assert.equal(az.origin + az.pathname, `${s.url}/authorize`);
        assert.equal(az.searchParams.get('response_type'), 'code');
        assert.equal(az.searchParams.get('client_id'), ci.client_id);
        assert.equal(az.searchParams.get('code_challenge_method'), 'S256');
        assert.equal(az.searchParams.get('resource'), serverUrl, 'resource = PRM resource');
        assert.equal(az.searchParams.get('scope'), 'mcp:tools', 'scope = PRM scopes_supported');
        assert.equal(az.searchParams.get('state'), provider.states[0]);

        // The browser came back to the client with code, state and iss (RFC 9207).
        const cb = provider.lastCallback;
        assert.equal(cb.origin + cb.pathname, redirectUrl);
        assert.equal(cb.searchParams.get('error'), null, `error at the redirect: ${cb.href}`);
        assert.match(cb.searchParams.get('code'), /^mcpgate_ac_[A-Za-z0-9_-]{43}$/);
        assert.equal(cb.searchParams.get('state'), provider.states[0]);
        assert.equal(cb.searchParams.get('iss'), s.url);
      });

      test('auth() with the authorization code gets mcpgate_at_/mcpgate_rt_ tokens', async () => {
        assert.ok(provider?.lastCallback, 'needs the previous test');
        log.length = 0;
        const code = provider.lastCallback.searchParams.get('code');
        const r = await auth(provider, { serverUrl, authorizationCode: code, fetchFn });
        assert.equal(r, 'AUTHORIZED');
        first = provider.tokens();
        assert.match(first.access_token, /^mcpgate_at_[A-Za-z0-9_-]{43}$/);
        assert.match(first.refresh_token, /^mcpgate_rt_[A-Za-z0-9_-]{43}$/);
        assert.equal(first.token_type.toLowerCase(), 'bearer');
        assert.equal(first.scope, 'mcp:tools');
        assert.ok(first.expires_in > 0 && first.expires_in <= 3600, `expires_in ${first.expires_in}`);

        const tok = log.find((e) => e.method === 'POST' && e.url === `${s.url}/token`);
        assert.ok(tok, 'a token request was sent');
        const body = new URLSearchParams(tok.requestBody);
        assert.equal(body.get('grant_type'), 'authorization_code');
        assert.equal(body.get('resource'), serverUrl);
        if (kind === 'confidential') {
          assert.match(tok.requestHeaders.get('authorization') || '', /^Basic /, 'client_secret_basic used');
          assert.equal(body.get('client_secret'), null);
        } else {
          assert.equal(tok.requestHeaders.get('authorization'), null);
          assert.equal(body.get('client_id'), provider.client.client_id);
        }
      });

      test('the access token is accepted on the route (not 401/403)', async () => {
        assert.ok(first, 'needs the previous test');
        const r = await callRoute(s.url, ROUTE, first.access_token);
        assert.ok(r.status !== 401 && r.status !== 403, `route answered ${r.status} ${r.www || ''} ${r.text.slice(0, 200)}`);
      });

      test('auth() again refreshes: a new pair, and the old refresh token is refused afterwards', async () => {
        assert.ok(first, 'needs the previous test');
        log.length = 0;
        const r = await auth(provider, { serverUrl, fetchFn });
        assert.equal(r, 'AUTHORIZED');
        const second = provider.tokens();
        const tok = log.find((e) => e.method === 'POST' && e.url === `${s.url}/token`);
        assert.equal(new URLSearchParams(tok.requestBody).get('grant_type'), 'refresh_token');
        assert.equal(provider.authorizationUrls.length, 1, 'no new browser authorization');
        assert.match(second.access_token, /^mcpgate_at_/);
        assert.match(second.refresh_token, /^mcpgate_rt_/);
        assert.notEqual(second.access_token, first.access_token);
        assert.notEqual(second.refresh_token, first.refresh_token);
        assert.equal(second.scope, 'mcp:tools');

        const asMeta = await (await fetch(`${s.url}/.well-known/oauth-authorization-server`)).json();
        await assert.rejects(
          refreshAuthorization(s.url, {
            metadata: asMeta, clientInformation: provider.client, refreshToken: first.refresh_token, resource: new URL(serverUrl),
          }),
          (e) => e instanceof InvalidGrantError,
          'the rotated-out refresh token is refused with invalid_grant',
        );
        // Reuse of a rotated refresh token revokes the whole grant: the newest pair dies too.
        await assert.rejects(
          refreshAuthorization(s.url, {
            metadata: asMeta, clientInformation: provider.client, refreshToken: second.refresh_token, resource: new URL(serverUrl),
          }),
          (e) => e instanceof InvalidGrantError,
          'the newest refresh token is refused after the reuse',
        );
        provider.secondAccess = second.access_token;
      });

      test('after the reuse, the newest access token is refused on the route (401 invalid_token)', async () => {
        assert.ok(provider?.secondAccess, 'needs the previous test');
        const r = await waitRefused(s.url, ROUTE, provider.secondAccess);
        assert.equal(r.status, 401, `route answered ${r.status} ${r.www || ''}`);
        assert.equal(r.challenge?.params.error, 'invalid_token');
      });
    });
  }

  describe('an MCP host: the SDK Streamable HTTP client with an auth provider', () => {
    test('401 → auth() → finishAuth(code) → connect → tools/call whoami shows alice', async () => {
      const redirectUrl = 'http://127.0.0.1:33420/oauth/callback';
      const log = [];
      const provider = new MemoryOAuthProvider({
        base: s.url,
        redirectUrl,
        metadata: {
          client_name: 'SDK host', redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'], token_endpoint_auth_method: 'none',
        },
      });
      const fetchFn = recordingFetch(log);
      const mk = () => new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider, fetch: fetchFn });
      const first = new Client({ name: 'mcpgate-e2e-host', version: '1.0.0' });
      const transport = mk();
      // No token yet: the gateway answers 401 with its challenge, the SDK runs
      // auth() from the challenge's resource_metadata and "opens the browser".
      await assert.rejects(first.connect(transport), (e) => e instanceof UnauthorizedError);
      assert.equal(log[0].url, serverUrl);
      assert.equal(log[0].method, 'POST');
      assert.equal(log[1].url, `${s.url}/.well-known/oauth-protected-resource${ROUTE}`, 'PRM from the challenge');
      assert.equal(provider.callbacks.length, 1, 'the browser leg ran once');
      const code = provider.lastCallback.searchParams.get('code');
      assert.match(code || '', /^mcpgate_ac_/, provider.lastCallback.href);
      await transport.finishAuth(code);
      assert.match(provider.tokens()?.access_token || '', /^mcpgate_at_/);
      await first.close().catch(() => {});

      const client = new Client({ name: 'mcpgate-e2e-host', version: '1.0.0' });
      const t2 = mk();
      await client.connect(t2);
      try {
        assert.equal(client.getServerVersion()?.name, 'whoami-server');
        const tools = await client.listTools();
        assert.ok(tools.tools.some((x) => x.name === 'whoami'), `tools: ${tools.tools.map((x) => x.name).join(', ')}`);
        const r = await client.callTool({ name: 'whoami', arguments: {} });
        assert.notEqual(r.isError, true, JSON.stringify(r).slice(0, 500));
        const env = r.structuredContent?.env;
        assert.ok(env, `structuredContent: ${JSON.stringify(r).slice(0, 500)}`);
        assert.equal(env.sub, USERS.alice.sub);
        assert.equal(env.client_id, provider.client.client_id);
        assert.ok(env.roles.includes('manager'), `roles ${JSON.stringify(env.roles)}`);
        assert.ok(env.scopes.includes('mcp:tools'), `scopes ${JSON.stringify(env.scopes)}`);
      } finally {
        await t2.terminateSession().catch(() => {});
        await client.close().catch(() => {});
      }
    });
  });

  test('gateway: exit 0 on SIGTERM, no sanitizer report, no secrets in its log', async () => {
    const rc = await s.gw.stop();
    assert.equal(rc, 0, `exit status ${rc}`);
    assertNoSecretsInLog(s.gw.stderr());
  });
});
