// Three instances on one Redis behind a real nginx doing plain round robin
// (issue 10), the way operators deploy them: no session affinity. Everything
// a client does goes through nginx, so consecutive requests of one session
// land on different instances and reach the session's owner over the
// internal channel: the OAuth login itself, the official SDK client's
// Streamable HTTP sessions (tools, identity, progress, an elicitation
// answered on another instance, a broken call resumed with Last-Event-ID,
// DELETE), its 2024-11-05 SSE client. Then one
// instance is SIGKILLed: its sessions answer 404 and the client initializes
// again elsewhere, the other sessions are untouched. Last, a revoked token is
// refused on every surviving instance within 1 s, and a session it holds ends.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

import { freePort, parseMetrics, redisCommand, request, startGateway, startNginx, startRedis, teardownAll, waitFor } from '../lib/harness.mjs';
import { mcpRequest } from '../lib/mcp.mjs';
import { callRoute, obtainTokens, oauthGatewayConfig, refresh, revoke, startIdp, USERS } from '../lib/oauth.mjs';

const ROUTE = '/mcp/whoami';
let redis;
let idp;
let front; // nginx
let gws = []; // the three instances, in nginx's upstream order
let tokens;
let client; // the OAuth client registration
let prefix;

after(async () => {
  await teardownAll();
});

/** The configuration of instance I: the same OAuth secret, prefix and public URL (nginx's) for all. */
function instanceConfig(base, port, internal) {
  return `${JSON.stringify({
    ...base,
    server: { ...base.server, listen: [`127.0.0.1:${port}`] },
    cluster: { listen: `127.0.0.1:${internal}`, advertise: `http://127.0.0.1:${internal}`, heartbeat: '1s' },
  }, null, 2)}\n`;
}

async function metrics(gw) {
  const r = await request({ port: gw.port, path: '/metrics' });
  assert.equal(r.status, 200);
  return parseMetrics(r.body);
}

/** Which instance owns SESSION: its id starts with the owner's tag, whose record names its pid. */
async function ownerOf(session) {
  const tag = session.split('.')[0];
  const rec = await redisCommand(redis.port, ['GET', `${prefix}instance:${tag}`]);
  assert.ok(rec, `no instance record for tag ${tag}`);
  const { pid } = JSON.parse(rec);
  const gw = gws.find((g) => g.pid === pid);
  assert.ok(gw, `tag ${tag} names pid ${pid}, none of the three`);
  return gw;
}

/** fetch with the bearer token, for the SDK transports. */
const bearerFetch = (token) => (url, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(url, { ...init, headers });
};

async function sdkClient(token, { elicit } = {}) {
  const c = new Client({ name: 'cluster-test', version: '1.0.0' }, { capabilities: elicit ? { elicitation: { form: {} } } : {} });
  if (elicit) c.setRequestHandler(ElicitRequestSchema, elicit);
  const transport = new StreamableHTTPClientTransport(new URL(`${front.url}${ROUTE}`), { fetch: bearerFetch(token) });
  await c.connect(transport);
  return { c, transport };
}

before(async () => {
  redis = await startRedis();
  const ports = [await freePort(), await freePort(), await freePort()];
  const internals = [await freePort(), await freePort(), await freePort()];
  front = await startNginx({ upstreams: ports });
  idp = await startIdp({ gatewayUrl: front.url });
  const base = JSON.parse(oauthGatewayConfig({ port: ports[0], redisUrl: redis.url, issuer: idp.issuer }));
  base.server.public_url = front.url;
  prefix = base.store.redis.prefix;
  gws = await Promise.all(ports.map((port, i) => startGateway({ port, config: instanceConfig(base, port, internals[i]) })));
  for (const gw of gws) {
    await waitFor(async () => (await request({ port: gw.port, path: '/readyz' })).status === 200, { timeoutMs: 15000, intervalMs: 100, what: `instance ${gw.port} ready` });
  }
  // The whole login goes through nginx: /authorize, the consent page and its
  // POST, /callback and /token land on different instances.
  ({ tokens, client } = await obtainTokens({ url: front.url }));
});

describe('three instances behind round robin', () => {
  test('the login through nginx gave tokens', () => {
    assert.match(tokens.access_token, /^mcpgate_at_/);
    assert.ok(tokens.refresh_token);
  });

  test('SDK sessions owned by each instance work through any: tools, identity, progress, elicitation, DELETE', { timeout: 60000 }, async () => {
    const before = await Promise.all(gws.map(metrics));
    const owners = new Set();
    // Sessions until each instance owns one: a session's requests come in a
    // fixed number, so a /healthz through nginx between two moves the turn on.
    for (let i = 0; owners.size < 3; i++) {
      assert.ok(i < 9, `nine sessions and still not one on each instance (${owners.size})`);
      await request({ port: front.port, path: '/healthz' });
      const { c, transport } = await sdkClient(tokens.access_token, {
        elicit: async (req) => ({ action: 'accept', content: { answer: `yes to ${req.params.message}` } }),
      });
      const session = transport.sessionId;
      assert.match(session, /^[A-Za-z0-9_-]{8}\./);
      owners.add(await ownerOf(session));
      const tools = await c.listTools();
      assert.ok(tools.tools.some((t) => t.name === 'whoami'));
      for (let k = 0; k < 3; k++) {
        const who = await c.callTool({ name: 'whoami', arguments: {} });
        assert.equal(who.structuredContent.env.sub, USERS.alice.sub, 'the identity reaches the child through any instance');
      }
      const progress = [];
      const slow = await c.callTool({ name: 'slow', arguments: { seconds: 0.3, steps: 3 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
      assert.equal(slow.isError, undefined, JSON.stringify(slow));
      assert.equal(progress.length, 3, `progress through the hop: ${JSON.stringify(progress)}`);
      // The elicitation request comes down the call's SSE answer; the client's
      // answer is a new POST, which lands on the next instance in turn.
      const el = await c.callTool({ name: 'elicit', arguments: { message: `q${i}` } });
      assert.match(JSON.stringify(el.content), new RegExp(`yes to q${i}`));
      await transport.terminateSession();
      const gone = await callRoute(front.url, ROUTE, tokens.access_token, { headers: { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' } });
      assert.equal(gone.status, 404, 'the DELETE, wherever it landed, ended the session on its owner');
      await c.close();
    }
    assert.equal(owners.size, 3, 'round robin put one session on each instance');
    const now = await Promise.all(gws.map(metrics));
    for (let i = 0; i < 3; i++) {
      const sent = now[i].get('mcpgate_cluster_forwarded_total') - before[i].get('mcpgate_cluster_forwarded_total');
      const got = now[i].get('mcpgate_cluster_hops_received_total') - before[i].get('mcpgate_cluster_hops_received_total');
      assert.ok(sent > 0 && got > 0, `instance ${i} forwarded ${sent} and received ${got} hops`);
      assert.equal(now[i].get('mcpgate_cluster_hops_refused_total'), 0);
    }
  });

  test('the SDK client resumes a broken tool call with Last-Event-ID, wherever the GET lands', { timeout: 30000 }, async () => {
    const before = await Promise.all(gws.map(metrics));
    const first = await sdkClient(tokens.access_token);
    const session = first.transport.sessionId;
    const version = first.transport.protocolVersion;
    const progress = [];
    let token;
    const call = first.c.callTool({ name: 'slow', arguments: { seconds: 1.2, steps: 4 } }, undefined, {
      onprogress: (p) => progress.push(p.progress), onresumptiontoken: (t) => (token = t), resetTimeoutOnProgress: true,
    });
    call.catch(() => {}); // the close below fails it
    await waitFor(() => progress.length >= 1 && token, { what: 'the first progress event and its id' });
    await first.c.close(); // the connection drops mid-call; the owner keeps the rest for the session
    const seenBefore = progress.length;

    // A new client on the same session, as after a network change: its GET with
    // Last-Event-ID goes through nginx to any instance, and on to the owner.
    const transport = new StreamableHTTPClientTransport(new URL(`${front.url}${ROUTE}`), { fetch: bearerFetch(tokens.access_token), sessionId: session });
    transport.setProtocolVersion(version);
    const c = new Client({ name: 'cluster-test-resumed', version: '1.0.0' });
    await c.connect(transport);
    const result = await c.request({ method: 'tools/call', params: { name: 'slow', arguments: { seconds: 1.2, steps: 4 } } }, CallToolResultSchema, {
      resumptionToken: token,
    });
    assert.match(JSON.stringify(result.content), /done/, JSON.stringify(result));
    // The SDK matches the replayed answer to this request (replayMessageId);
    // the replayed progress carries the first request's token, so it counts
    // only what the first client saw: the call was broken before its end.
    assert.ok(seenBefore < 4, `the call ended before the break (${seenBefore} progress events)`);
    const now = await Promise.all(gws.map(metrics));
    const forwarded = now.reduce((n, m, i) => n + m.get('mcpgate_cluster_forwarded_total') - before[i].get('mcpgate_cluster_forwarded_total'), 0);
    assert.ok(forwarded >= 2, `the session's requests were forwarded (${forwarded})`);
    await transport.terminateSession();
    await c.close();
  });

  test('the 2024-11-05 SDK client: its stream on one instance, its POSTs on all', { timeout: 30000 }, async () => {
    const before = await Promise.all(gws.map(metrics));
    const c = new Client({ name: 'cluster-test-sse', version: '1.0.0' });
    const transport = new SSEClientTransport(new URL(`${front.url}${ROUTE}/sse`), { fetch: bearerFetch(tokens.access_token) });
    await c.connect(transport);
    for (let k = 0; k < 6; k++) {
      const who = await c.callTool({ name: 'whoami', arguments: {} });
      assert.equal(who.structuredContent.env.sub, USERS.alice.sub);
    }
    const now = await Promise.all(gws.map(metrics));
    const forwarded = now.reduce((n, m, i) => n + m.get('mcpgate_cluster_forwarded_total') - before[i].get('mcpgate_cluster_forwarded_total'), 0);
    assert.ok(forwarded >= 4, `of the 7 POSTs, those that landed on the other two instances were forwarded (${forwarded})`);
    await c.close();
  });

  test('SIGKILL one instance: its sessions answer 404 and the client starts again; the others are untouched', { timeout: 60000 }, async () => {
    // One live session per instance.
    const held = [];
    while (held.length < 3 || new Set(held.map((h) => h.owner)).size < 3) {
      const s = await sdkClient(tokens.access_token);
      const owner = await ownerOf(s.transport.sessionId);
      if (held.some((h) => h.owner === owner)) {
        await s.transport.terminateSession();
        await s.c.close();
        continue;
      }
      held.push({ ...s, owner, session: s.transport.sessionId });
    }
    const victim = gws[2];
    const dead = held.find((h) => h.owner === victim);
    const alive = held.filter((h) => h.owner !== victim);
    const goneBefore = await Promise.all(gws.slice(0, 2).map(metrics));
    assert.equal(await victim.stop('SIGKILL'), 'SIGKILL');

    // Through nginx, the dead owner's session is 404 wherever the request lands.
    for (let k = 0; k < 4; k++) {
      const r = await callRoute(front.url, ROUTE, tokens.access_token, { headers: { 'mcp-session-id': dead.session, 'mcp-protocol-version': '2025-11-25' } });
      assert.equal(r.status, 404, `request ${k} for the dead owner's session: ${r.status} ${r.text}`);
    }
    const goneNow = await Promise.all(gws.slice(0, 2).map(metrics));
    const gone = goneNow.reduce((n, m, i) => n + m.get('mcpgate_cluster_owner_gone_total') - goneBefore[i].get('mcpgate_cluster_owner_gone_total'), 0);
    assert.ok(gone >= 4, `owner_gone counted the 404s (${gone})`);
    // The SDK client of that session sees the 404 and, as the spec says, starts a new session.
    await assert.rejects(dead.c.callTool({ name: 'whoami', arguments: {} }), /404|not found|session/i);
    await dead.c.close();
    const again = await sdkClient(tokens.access_token);
    assert.notEqual(await ownerOf(again.transport.sessionId), victim);
    const who = await again.c.callTool({ name: 'whoami', arguments: {} });
    assert.equal(who.structuredContent.env.sub, USERS.alice.sub);
    // The sessions of the two survivors never noticed.
    for (const h of alive) {
      for (let k = 0; k < 3; k++) {
        const r = await h.c.callTool({ name: 'echo', arguments: { text: `still ${k}` } });
        assert.equal(r.content[0].text, `still ${k}`);
      }
    }
    for (const h of [...alive, again]) {
      await h.transport.terminateSession();
      await h.c.close();
    }
  });

  /** Polls each of GWS until it refuses TOKEN (401); returns the ms after T0 at which each did. */
  async function refusedBy(gws_, token, t0) {
    const at = [];
    for (const gw of gws_) {
      await waitFor(async () => (await callRoute(gw.url, ROUTE, token)).status === 401, { timeoutMs: 1000, intervalMs: 20, what: `instance ${gw.port} to refuse the revoked token within 1 s` });
      at.push(Date.now() - t0);
    }
    return at;
  }

  test('a revoked access token is refused on every surviving instance within 1 s', { timeout: 30000 }, async () => {
    const survivors = gws.slice(0, 2);
    // Each survivor has the token in its bearer cache.
    for (const gw of survivors) assert.equal((await callRoute(gw.url, ROUTE, tokens.access_token)).status, 200);
    const t0 = Date.now();
    const r = await revoke(front.url, client, tokens.access_token);
    assert.equal(r.status, 200, r.text);
    const at = await refusedBy(survivors, tokens.access_token, t0);
    console.log(`# revoked access token refused by the two survivors ${at[0]} ms and ${at[1]} ms after /revoke answered`);
  });

  test('a revoked grant ends its sessions and their forwarded streams on every instance within 1 s', { timeout: 30000 }, async () => {
    const survivors = gws.slice(0, 2);
    const r = await refresh(front.url, client, tokens.refresh_token);
    assert.equal(r.status, 200, r.text);
    const fresh = r.json;
    const open = await sdkClient(fresh.access_token);
    for (const gw of survivors) assert.equal((await callRoute(gw.url, ROUTE, fresh.access_token)).status, 200);
    // A GET stream of that session opened on the instance that does not own
    // it: a forwarded stream, which must end when the owner ends the session.
    const owner = await ownerOf(open.transport.sessionId);
    const other = survivors.find((g) => g !== owner);
    const stream = await mcpRequest({
      port: other.port, path: ROUTE, method: 'GET', session: open.transport.sessionId, protocolVersion: open.transport.protocolVersion,
      headers: { authorization: `Bearer ${fresh.access_token}` },
    });
    assert.equal(stream.status, 200);
    assert.ok(stream.sse, 'the forwarded GET is an SSE stream');
    const t0 = Date.now();
    const rv = await revoke(front.url, client, fresh.refresh_token); // a refresh token revokes its grant
    assert.equal(rv.status, 200, rv.text);
    assert.ok(await stream.sse.waitEnd(1000), 'the forwarded GET stream of the revoked grant ended within 1 s');
    const ended = Date.now() - t0;
    const at = await refusedBy(survivors, fresh.access_token, t0);
    console.log(`# grant revoked: forwarded GET stream ended ${ended} ms, its access token refused by the survivors ${at[0]} ms and ${at[1]} ms after /revoke answered`);
    const gone = await callRoute(owner.url, ROUTE, fresh.access_token, { headers: { 'mcp-session-id': open.transport.sessionId, 'mcp-protocol-version': '2025-11-25' } });
    assert.equal(gone.status, 401);
    await open.c.close().catch(() => {});
    for (const gw of survivors) assert.equal(await gw.stop(), 0);
    await front.stop();
  });
});
