// A 2026-07-28 client and a 2025-11-25 client on one route, through OAuth, at
// the same time (issue 11): the route has `modern: true` in front of the
// legacy whoami STDIO server, and a policy that shows manager_report to
// managers only. alice (manager) connects with @modelcontextprotocol/client
// 2.4.0 pinned to 2026-07-28, bob (employee) with the 1.32.2 SDK client; each
// has a token from the real flow (DCR, consent, the test IdP). Each sees only
// the tools permitted to them, and each request carries its own identity.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { CONFORMANCE_DIR, ensureNpmDeps } from '../lib/mcp.mjs';
import { obtainTokens, startOAuthStack, USERS, WHOAMI_BIN } from '../lib/oauth.mjs';

const ROUTE = '/mcp/whoami';

const bearerFetch = (token) => (url, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(url, { ...init, headers });
};

describe('two eras on one route through OAuth', () => {
  test('alice on 2026-07-28 and bob on 2025-11-25 at once, each with the tools the policy gives them', { timeout: 90000 }, async () => {
    const err = ensureNpmDeps(CONFORMANCE_DIR);
    assert.equal(err, null, `cannot install tests/conformance (the 2.x client): ${err}`);
    const v2 = await import(pathToFileURL(path.join(CONFORMANCE_DIR, 'node_modules', '@modelcontextprotocol', 'client', 'dist', 'index.mjs')).href);
    const stack = await startOAuthStack({
      routes: [{
        name: 'whoami', path: ROUTE, modern: true, stdio: { command: [WHOAMI_BIN] },
        tools: [{ match: 'manager_report', roles: ['manager'] }],
      }],
    });
    const alice = (await obtainTokens(stack, { user: 'alice' })).tokens.access_token;
    const bob = (await obtainTokens(stack, { user: 'bob' })).tokens.access_token;
    const url = new URL(stack.routeUrl(ROUTE));

    const modern = new v2.Client({ name: 'alice-modern', version: '1' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    const legacy = new Client({ name: 'bob-legacy', version: '1' });
    await Promise.all([
      modern.connect(new v2.StreamableHTTPClientTransport(url, { fetch: bearerFetch(alice) })),
      legacy.connect(new StreamableHTTPClientTransport(url, { fetch: bearerFetch(bob) })),
    ]);
    assert.equal(modern.getNegotiatedProtocolVersion(), '2026-07-28');
    assert.equal(legacy.getServerVersion()?.name !== undefined, true);

    const [mTools, lTools] = await Promise.all([modern.listTools(), legacy.listTools()]);
    const names = (r) => r.tools.map((t) => t.name);
    assert.ok(names(mTools).includes('manager_report'), `alice (manager) sees manager_report: ${names(mTools)}`);
    assert.ok(!names(lTools).includes('manager_report'), `bob (employee) must not see manager_report: ${names(lTools)}`);
    assert.ok(names(lTools).includes('whoami'));

    const [mWho, lWho, mReport] = await Promise.all([
      modern.callTool({ name: 'whoami', arguments: {} }),
      legacy.callTool({ name: 'whoami', arguments: {} }),
      modern.callTool({ name: 'manager_report', arguments: {} }),
    ]);
    assert.equal(mWho.structuredContent.env.sub, USERS.alice.sub, 'the modern request carries alice');
    assert.equal(lWho.structuredContent.env.sub, USERS.bob.sub, 'the legacy session carries bob');
    assert.ok(mWho._meta?.['io.modelcontextprotocol/serverInfo'], 'a modern result');
    assert.notEqual(mReport.isError, true, JSON.stringify(mReport));
    // bob calling it looks like an unknown tool, in his era.
    const denied = await legacy.callTool({ name: 'manager_report', arguments: {} }).catch((e) => ({ thrown: e }));
    assert.ok(denied.thrown || denied.isError, `bob's call of manager_report was refused: ${JSON.stringify(denied)}`);

    // Without a token, neither era gets in.
    const anon = new v2.Client({ name: 'anon', version: '1' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    await assert.rejects(anon.connect(new v2.StreamableHTTPClientTransport(url)), /401|nauthorized/);
    await Promise.all([modern.close(), legacy.close()]);
  });
});
