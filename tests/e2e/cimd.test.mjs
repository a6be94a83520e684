// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, as MCP
// 2025-11-25 pins it): a client_id that is an https URL is fetched by mcpgate, validated and
// cached. A local https server with a CA made here serves the documents; mcpgate trusts that
// CA through oauth.cimd.ca_file and fetches from 127.0.0.1 only because it is listed in
// oauth.cimd.allow_hosts (the same server named "localhost" is refused as loopback). The
// official SDK client (clientMetadataUrl) runs the whole flow through consent and login; each
// bad document gets an invalid_client page at /authorize and an audit line.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { tmpDir, waitFor } from '../lib/harness.mjs';
import {
  CookieJar, MemoryOAuthProvider, USERS, assertNoSecretsInLog, authorizeUrl, callRoute, http, login,
  makePkce, newClient, obtainTokens, recordingFetch, startOAuthStack, tokenRequest,
} from '../lib/oauth.mjs';

const ROUTE = '/mcp/whoami';
const TIMEOUT_MS = 1000; // oauth.cimd.timeout here: the slow document waits longer

/** A CA and a server certificate for 127.0.0.1 and localhost signed by it (openssl CLI). */
function makeCa() {
  const dir = tmpDir('mcpgate-cimd-ca-');
  const p = (f) => path.join(dir, f);
  const run = (args) => execFileSync('openssl', args, { stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('ca.key'),
    '-out', p('ca.pem'), '-days', '1', '-subj', '/CN=mcpgate test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('srv.key'),
    '-out', p('srv.csr'), '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(p('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  run(['x509', '-req', '-in', p('srv.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial',
    '-out', p('srv.pem'), '-days', '1', '-extfile', p('ext.cnf')]);
  return { caFile: p('ca.pem'), key: fs.readFileSync(p('srv.key')), cert: fs.readFileSync(p('srv.pem')) };
}

/**
 * The documents. Each path is one case; hits[path] counts the requests. A document's own
 * client_id is its URL unless the case says otherwise.
 */
function startDocServer({ key, cert }) {
  const hits = {};
  const sockets = new Set();
  const held = new Set();
  let base;
  const doc = (p, extra = {}) => ({
    client_id: `${base}${p}`,
    client_name: 'CIMD Test App',
    redirect_uris: ['http://127.0.0.1/callback', 'http://localhost/callback'],
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    ...extra,
  });
  const cases = {
    '/app/client.json': (p) => ({ body: doc(p), cache: 'public, max-age=600' }),
    '/app/sdk.json': (p) => ({ body: doc(p, { client_name: 'SDK CIMD host' }), cache: 'max-age=600' }),
    '/bad/wrong-id.json': () => ({ body: doc('/app/client.json') }),
    '/bad/big.json': (p) => ({ body: doc(p, { padding: 'x'.repeat(6000) }) }),
    '/bad/bad.json': () => ({ text: '{"client_id": "not closed' }),
    '/bad/basic.json': (p) => ({ body: doc(p, { token_endpoint_auth_method: 'client_secret_basic' }) }),
    '/bad/pkjwt.json': (p) => ({ body: doc(p, { token_endpoint_auth_method: 'private_key_jwt', jwks_uri: `${base}/jwks` }) }),
    '/bad/no-redirects.json': (p) => ({ body: doc(p, { redirect_uris: [] }) }),
    '/bad/js-redirect.json': (p) => ({ body: doc(p, { redirect_uris: ['javascript:alert(1)'] }) }),
    '/bad/bidi-name.json': (p) => ({ body: doc(p, { client_name: 'Evil\u202emoc.elgoog' }) }),
    '/bad/404.json': () => ({ status: 404, text: 'not here' }),
  };
  const server = https.createServer({ key, cert }, (req, res) => {
    const p = new URL(req.url, base).pathname;
    hits[p] = (hits[p] || 0) + 1;
    if (p === '/bad/redirect.json') {
      res.writeHead(302, { location: `${base}/app/client.json` });
      res.end();
      return;
    }
    if (p === '/bad/slow.json') { // answers after the gateway gave up
      const t = setTimeout(() => {
        held.delete(t);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(doc(p)));
      }, TIMEOUT_MS * 3);
      held.add(t);
      return;
    }
    const c = cases[p];
    if (!c) {
      res.writeHead(404);
      res.end();
      return;
    }
    const r = c(p);
    const headers = { 'content-type': 'application/json' };
    if (r.cache) headers['cache-control'] = r.cache;
    res.writeHead(r.status || 200, headers);
    res.end(r.text ?? JSON.stringify(r.body));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      base = `https://127.0.0.1:${port}`;
      resolve({
        base,
        port,
        hits,
        url: (p) => `${base}${p}`,
        close: () => new Promise((r) => {
          for (const t of held) clearTimeout(t);
          for (const s of sockets) s.destroy();
          server.close(() => r());
        }),
      });
    });
  });
}

const auditLines = (gw, url) => gw.logs().filter((l) => l.module === 'audit' && l.msg === 'client metadata refused' && l.client_id === url);

describe('client ID metadata documents', () => {
  let s;
  let docs;

  before(async () => {
    const ca = makeCa();
    docs = await startDocServer(ca);
    s = await startOAuthStack({
      oauth: {
        cimd: { allow_hosts: ['127.0.0.1'], deny_hosts: ['127.0.0.2'], ca_file: ca.caFile, timeout: `${TIMEOUT_MS}ms` },
      },
    });
  });

  after(async () => {
    if (s && !s.gw.exited) await s.gw.stop().catch(() => {});
    if (docs) await docs.close();
  });

  test('AS metadata advertises client_id_metadata_document_supported and the none method', async () => {
    const m = (await http(`${s.url}/.well-known/oauth-authorization-server`)).json;
    assert.equal(m.client_id_metadata_document_supported, true);
    assert.ok(m.token_endpoint_auth_methods_supported.includes('none'), JSON.stringify(m.token_endpoint_auth_methods_supported));
    assert.ok(m.registration_endpoint, 'DCR stays advertised');
  });

  test('the SDK client with clientMetadataUrl: no registration, consent, login, code exchange, tools/call, refresh', async () => {
    const url = docs.url('/app/sdk.json');
    const serverUrl = s.routeUrl(ROUTE);
    // The document lists the port-less http://127.0.0.1/callback; the client listens on an
    // ephemeral port, which matches (RFC 8252 §7.3), as Claude Code's document needs.
    const redirectUrl = 'http://127.0.0.1:33431/callback';
    const provider = new MemoryOAuthProvider({ base: s.url, redirectUrl, metadata: { redirect_uris: [redirectUrl] } });
    provider.clientMetadataUrl = url;
    const log = [];
    const fetchFn = recordingFetch(log);
    assert.equal(await auth(provider, { serverUrl, fetchFn }), 'REDIRECT');
    assert.equal(log.find((e) => e.method === 'POST' && e.url === `${s.url}/register`), undefined, 'no DCR');
    assert.equal(provider.client.client_id, url);
    const az = provider.authorizationUrls[0];
    assert.equal(az.searchParams.get('client_id'), url);
    const cb = provider.lastCallback;
    assert.equal(cb.origin + cb.pathname, redirectUrl);
    assert.match(cb.searchParams.get('code') || '', /^mcpgate_ac_/, cb.href);

    assert.equal(await auth(provider, { serverUrl, authorizationCode: cb.searchParams.get('code'), fetchFn }), 'AUTHORIZED');
    const tok = log.find((e) => e.method === 'POST' && e.url === `${s.url}/token`);
    assert.equal(new URLSearchParams(tok.requestBody).get('client_id'), url, 'a public client: client_id in the form');
    assert.equal(tok.requestHeaders.get('authorization'), null);
    const first = provider.tokens();
    assert.match(first.access_token, /^mcpgate_at_/);
    assert.match(first.refresh_token, /^mcpgate_rt_/);

    const client = new Client({ name: 'cimd-host', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });
    await client.connect(transport);
    try {
      const r = await client.callTool({ name: 'whoami', arguments: {} });
      const env = r.structuredContent?.env;
      assert.ok(env, JSON.stringify(r).slice(0, 400));
      assert.equal(env.sub, USERS.alice.sub);
      assert.equal(env.client_id, url, 'the principal carries the document URL as client_id');
    } finally {
      await transport.terminateSession().catch(() => {});
      await client.close().catch(() => {});
    }

    // Refresh: /token looks the client up again (from the cache).
    assert.equal(await auth(provider, { serverUrl, fetchFn }), 'AUTHORIZED');
    assert.notEqual(provider.tokens().refresh_token, first.refresh_token);
    assert.equal(docs.hits['/app/sdk.json'], 1, 'fetched once, then served from the cache (max-age=600)');
  });

  test('the consent page names the verified domain; redirect URIs outside the document are refused', async () => {
    const url = docs.url('/app/client.json');
    const client = { client_id: url, redirect_uris: ['http://127.0.0.1:40123/callback'] };
    const page = await http(authorizeUrl(s.url, client, {}), { jar: new CookieJar() });
    assert.equal(page.status, 200, page.text.slice(0, 400));
    assert.match(page.text, /<span id="client-name">CIMD Test App<\/span>/);
    assert.match(page.text, new RegExp(`<strong id="client-domain">127\\.0\\.0\\.1:${docs.port}</strong>`));
    assert.match(page.text, /verified/);

    for (const bad of ['http://127.0.0.1:40123/other', 'https://evil.example/callback', 'http://127.0.0.2/callback']) {
      const r = await http(authorizeUrl(s.url, { ...client, redirect_uris: [bad] }, {}));
      assert.equal(r.status, 400, `${bad}: ${r.status}`);
      assert.equal(r.location, null, `${bad}: never redirected`);
      assert.match(r.text, /Unregistered redirect address/, bad);
    }
    assert.equal(docs.hits['/app/client.json'], 1, 'one fetch for all four requests');
  });

  test('the whole flow with the URL as client_id through the test helpers (login, code exchange, route)', async () => {
    const client = { client_id: docs.url('/app/client.json'), redirect_uris: ['http://localhost:40124/callback'], token_endpoint_auth_method: 'none' };
    const flow = await login(s, { client });
    assert.match(flow.params.get('code') || '', /^mcpgate_ac_/, flow.url);
    const t = await tokenRequest(s.url, {
      grant_type: 'authorization_code', code: flow.params.get('code'), code_verifier: flow.pkce.verifier,
      redirect_uri: client.redirect_uris[0],
    }, client);
    assert.equal(t.status, 200, t.text);
    const r = await callRoute(s.url, ROUTE, t.json.access_token);
    assert.ok(r.status !== 401 && r.status !== 403, `route: ${r.status}`);
    // A secret offered for this public client is refused.
    const withSecret = await tokenRequest(s.url, { grant_type: 'refresh_token', refresh_token: t.json.refresh_token },
      client, { auth: { headers: {}, fields: { client_id: client.client_id, client_secret: 'x' } } });
    assert.equal(withSecret.status, 401);
    assert.equal(withSecret.json?.error, 'invalid_client');
  });

  const badCases = [
    ['wrong client_id', '/bad/wrong-id.json', /is not the URL it was fetched from/],
    ['larger than 5 KiB', '/bad/big.json', /larger than 5120 bytes/],
    ['a redirect (302)', '/bad/redirect.json', /redirect \(HTTP 302\); redirects are not followed/],
    ['slower than oauth.cimd.timeout', '/bad/slow.json', new RegExp(`not served within ${TIMEOUT_MS} ms`)],
    ['not JSON', '/bad/bad.json', /not valid JSON/],
    ['client_secret_basic', '/bad/basic.json', /client_secret_basic.*shared secret/],
    ['private_key_jwt', '/bad/pkjwt.json', /private_key_jwt.*not supported/],
    ['no redirect_uris', '/bad/no-redirects.json', /redirect_uris is required/],
    ['a javascript: redirect URI', '/bad/js-redirect.json', /redirect_uris\[0\]: redirect_uri scheme is not allowed/],
    ['a bidi client_name', '/bad/bidi-name.json', /client_name/],
    ['HTTP 404', '/bad/404.json', /answered HTTP 404/],
  ];
  for (const [what, p, reason] of badCases) {
    test(`a document that is ${what}: invalid_client page at /authorize, 401 at /token, an audit line, nothing cached`, async () => {
      const url = docs.url(p);
      const client = { client_id: url, redirect_uris: ['http://127.0.0.1/callback'] };
      const r = await http(authorizeUrl(s.url, client, {}));
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.text.slice(0, 300)}`);
      assert.match(r.headers.get('content-type') || '', /^text\/html/);
      assert.equal(r.location, null);
      assert.match(r.text, /invalid_client/);
      assert.match(r.text, /Application not recognised/);
      assert.match(r.text.replace(/&quot;/g, '"').replace(/&#39;/g, "'"), reason, r.text);
      const line = await s.gw.waitForLog((l) => l.msg === 'client metadata refused' && l.client_id === url);
      assert.match(line.reason, reason);

      const before = docs.hits[p];
      const t = await tokenRequest(s.url, { grant_type: 'refresh_token', refresh_token: 'mcpgate_rt_x' }, { client_id: url, token_endpoint_auth_method: 'none' });
      assert.equal(t.status, 401, t.text);
      assert.equal(t.json?.error, 'invalid_client');
      assert.match(t.json?.error_description || '', reason);
      assert.equal(docs.hits[p], before + 1, 'a refused document is fetched again: errors are never cached');
      assert.equal(auditLines(s.gw, url).length, 2);
    });
  }

  test('SSRF guard: localhost (not in allow_hosts) is refused as loopback after resolution, with no request made', async () => {
    const url = `https://localhost:${docs.port}/app/client.json`;
    const before = docs.hits['/app/client.json'];
    const r = await http(authorizeUrl(s.url, { client_id: url, redirect_uris: ['http://127.0.0.1/callback'] }, {}));
    assert.equal(r.status, 400, r.text.slice(0, 300));
    assert.match(r.text, /invalid_client/);
    assert.match(r.text, /private, loopback or other special-use address/);
    const line = await s.gw.waitForLog((l) => l.msg === 'client metadata refused' && l.client_id === url);
    assert.match(line.reason, /refused to connect to localhost \((127\.0\.0\.1|::1)\): loopback address/);
    assert.equal(docs.hits['/app/client.json'], before, 'the document server saw nothing');
  });

  test('deny_hosts and malformed client_id URLs are refused before any fetch', async () => {
    const cases = [
      [`https://127.0.0.2:${docs.port}/app/client.json`, /does not accept applications from this host/],
      [`https://127.0.0.2.:${docs.port}/app/client.json`, /does not accept applications from this host/],
      [`https://127.0.0.1:${docs.port}/`, /must have a path/],
      [`https://127.0.0.1:${docs.port}/a/../app/client.json`, /\. or \.\. path segments/],
      [`https://127.0.0.1:${docs.port}/app/client.json?x=1`, /query string/],
      [`https://user@127.0.0.1:${docs.port}/app/client.json`, /user name or password/],
    ];
    const total = Object.values(docs.hits).reduce((a, b) => a + b, 0);
    for (const [url, reason] of cases) {
      const r = await http(authorizeUrl(s.url, { client_id: url, redirect_uris: ['http://127.0.0.1/callback'] }, {}));
      assert.equal(r.status, 400, `${url}: ${r.status}`);
      assert.match(r.text, /invalid_client/, url);
      assert.match(r.text, reason, url);
      assert.equal(auditLines(s.gw, url).length, 1, `${url}: one audit line`);
    }
    assert.equal(Object.values(docs.hits).reduce((a, b) => a + b, 0), total, 'no fetch');
  });

  test('DCR keeps working beside it, and issues ids that never start with https://', async () => {
    const { client, tokens } = await obtainTokens(s, { clientOpts: { redirectPort: 40125 } });
    assert.doesNotMatch(client.client_id, /^https:/i);
    assert.match(tokens.access_token, /^mcpgate_at_/);
    // A registration naming its own https client_id gets an id of ours all the same.
    const c2 = await newClient(s.url, { redirectPort: 40126, client_id: docs.url('/app/client.json') });
    assert.doesNotMatch(c2.client_id, /^https:/i);
  });

  test('gateway: exit 0 on SIGTERM, no sanitizer report, no secrets in its log', async () => {
    const rc = await s.gw.stop();
    assert.equal(rc, 0, `exit status ${rc}`);
    assertNoSecretsInLog(s.gw.stderr());
  });
});

describe('client ID metadata documents without allow_hosts, at shutdown, and disabled', () => {
  let docs;
  after(async () => {
    if (docs) await docs.close();
  });

  test('without allow_hosts a document on 127.0.0.1 is refused as a loopback address', async () => {
    const ca = makeCa();
    docs = await startDocServer(ca);
    docs.caFile = ca.caFile;
    const s = await startOAuthStack({ oauth: { cimd: { ca_file: ca.caFile } } });
    try {
      const url = docs.url('/app/client.json');
      const r = await http(authorizeUrl(s.url, { client_id: url, redirect_uris: ['http://127.0.0.1/callback'] }, { pkce: makePkce() }));
      assert.equal(r.status, 400, r.text.slice(0, 300));
      assert.match(r.text, /invalid_client/);
      assert.match(r.text, /special-use address/);
      const line = await s.gw.waitForLog((l) => l.msg === 'client metadata refused' && l.client_id === url);
      assert.match(line.reason, /refused to connect to 127\.0\.0\.1 \(127\.0\.0\.1\): loopback address/);
      assert.equal(docs.hits['/app/client.json'], undefined, 'no connection reached the server');
    } finally {
      assert.equal(await s.gw.stop(), 0);
    }
  });

  test('a fetch in flight at shutdown: the waiting /authorize is answered, exit 0, no leak', async () => {
    const s = await startOAuthStack({
      oauth: { cimd: { allow_hosts: ['127.0.0.1'], ca_file: docs.caFile, timeout: '30s' } },
      server: { limits: { shutdown_grace: '0s' } },
    });
    const url = docs.url('/bad/slow.json');
    const before = docs.hits['/bad/slow.json'] || 0;
    const pending = http(authorizeUrl(s.url, { client_id: url, redirect_uris: ['http://127.0.0.1/callback'] }, {}))
      .catch((e) => ({ error: e }));
    await waitFor(() => (docs.hits['/bad/slow.json'] || 0) > before, { what: 'the document request to arrive' });
    assert.equal(await s.gw.stop(), 0);
    const r = await pending;
    if (!r.error) assert.equal(r.status, 503, r.text.slice(0, 300));
  });

  test('oauth.cimd.enabled false: not advertised, and a URL client_id is an unknown application', async () => {
    const s = await startOAuthStack({ oauth: { cimd: { enabled: false } } });
    try {
      const m = (await http(`${s.url}/.well-known/oauth-authorization-server`)).json;
      assert.equal(m.client_id_metadata_document_supported, undefined);
      const r = await http(authorizeUrl(s.url, { client_id: docs.url('/app/client.json'), redirect_uris: ['http://127.0.0.1/callback'] }, {}));
      assert.equal(r.status, 400);
      assert.match(r.text, /Unknown application/);
    } finally {
      assert.equal(await s.gw.stop(), 0);
    }
  });
});
