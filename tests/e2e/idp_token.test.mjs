// identity.idp_access_token: the user's IdP access token reaches the
// upstream, is renewed through the IdP before it expires, and when the IdP
// refuses the renewal the client's grant is revoked (it must sign in again).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import { freePort, sleep, startGateway, startRedis, teardownAll } from '../lib/harness.mjs';
import { oauthGatewayConfig, obtainTokens, refresh, startIdp } from '../lib/oauth.mjs';
import { mcpPost, rawSession, rpc, startUpstream, stopAll } from './lib_identity.mjs';

after(async () => {
  await stopAll();
  await teardownAll();
});

async function seenToken(url, token, sid) {
  const r = await mcpPost(url, rpc('tools/call', { name: 'headers', arguments: {} }), { token, sessionId: sid });
  return { status: r.status, text: r.text, headers: r.status === 200 ? JSON.parse(r.response.result.content[0].text) : null };
}

test('the IdP token is forwarded, renewed before it expires, and a refused renewal revokes the grant', { timeout: 90000 }, async () => {
  const upstream = await startUpstream();
  const redis = await startRedis();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  // 61 s tokens: inside mcpgate's 60 s renewal margin one second after issue.
  const idp = await startIdp({ gatewayUrl: url, args: ['--token-ttl', '61'] });
  const gw = await startGateway({
    port,
    config: oauthGatewayConfig({
      port, redisUrl: redis.url, issuer: idp.issuer,
      routes: [{ name: 'up', path: '/mcp/up', http: { url: upstream.url }, identity: { headers: true, idp_access_token: true } }],
    }),
  });
  const stack = { redis, idp, gw, url, port, issuer: idp.issuer };
  const { client, tokens } = await obtainTokens(stack, { user: 'alice', resource: `${url}/mcp/up` });
  const route = `${url}/mcp/up`;
  const sid = await rawSession(route, tokens.access_token);

  const first = await seenToken(route, tokens.access_token, sid);
  assert.equal(first.status, 200, first.text);
  const t1 = first.headers['x-mcp-idp-access-token'];
  assert.ok(t1 && t1.length > 10, 'the upstream got the IdP access token');
  assert.equal(first.headers.authorization, undefined, 'the gateway token is never forwarded');

  await sleep(1500);
  const second = await seenToken(route, tokens.access_token, sid);
  assert.equal(second.status, 200, second.text);
  const t2 = second.headers['x-mcp-idp-access-token'];
  assert.ok(t2 && t2 !== t1, 'an IdP token inside the renewal margin was renewed');

  // The IdP refuses the next renewal: the grant ends.
  const knob = await fetch(`${idp.origin}/__test/fail-next-token`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ status: 400, error: 'invalid_grant' }),
  });
  assert.equal(knob.status, 200);
  await sleep(1500);
  const third = await mcpPost(route, rpc('tools/call', { name: 'headers', arguments: {} }), { token: tokens.access_token, sessionId: sid });
  assert.equal(third.status, 401, third.text);
  assert.match(third.headers.get('www-authenticate'), /error="invalid_token"/);
  // The grant is gone: the refresh token is refused too.
  let r;
  for (let i = 0; i < 20; i++) {
    r = await refresh(url, client, tokens.refresh_token);
    if (r.status === 400) break;
    await sleep(100);
  }
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error, 'invalid_grant');
  assert.equal(await gw.stop(), 0);
});
