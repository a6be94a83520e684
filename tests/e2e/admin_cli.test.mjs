// The admin commands (mcpgate grants …, mcpgate clients …) against the same
// Redis as a running gateway, with grants made through the real flow (test
// IdP, consent, code, token): what they list is what exists, and what they
// revoke stops working on the route at once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { runCli, teardownAll } from '../lib/harness.mjs';
import { USERS, callRoute, obtainTokens, startOAuthStack, waitRefused } from '../lib/oauth.mjs';

describe('admin CLI', () => {
  let stack;
  const cli = (...args) => runCli([...args, '-c', stack.gw.configPath], { timeoutMs: 20000 });

  before(async () => {
    stack = await startOAuthStack();
  });
  after(async () => {
    if (stack) assert.equal(await stack.gw.stop(), 0, 'gateway exit status');
    await teardownAll();
  });

  test('grants list/revoke and clients list/delete act on the real grants', async () => {
    const a1 = await obtainTokens(stack, { user: 'alice', clientOpts: { name: 'Alice One' } });
    const a2 = await obtainTokens(stack, { user: 'alice', clientOpts: { name: 'Alice Two' } });
    const b1 = await obtainTokens(stack, { user: 'bob', clientOpts: { name: 'Bob App' } });
    for (const t of [a1, a2, b1]) {
      const r = await callRoute(stack.url, '/mcp/whoami', t.tokens.access_token);
      assert.notEqual(r.status, 401, 'a fresh token works on the route');
    }

    // Listing: every grant once, with subject and client; --user narrows it.
    const all = await cli('grants', 'list');
    assert.equal(all.code, 0, all.stderr);
    const rows = all.stdout.trim().split('\n').slice(1).map((l) => l.split('\t'));
    assert.equal(rows.length, 3, all.stdout);
    const aliceSub = USERS.alice.sub, bobSub = USERS.bob.sub;
    assert.equal(rows.filter((r) => r[1] === aliceSub).length, 2);
    assert.equal(rows.filter((r) => r[1] === bobSub).length, 1);
    const mine = await cli('grants', 'list', '--user', aliceSub);
    assert.equal(mine.stdout.trim().split('\n').length, 3, mine.stdout); // header + 2
    assert.ok(!mine.stdout.includes(bobSub));

    // Revoking one grant: its token is refused, the other of the same user still works.
    const a1Grant = rows.find((r) => r[1] === aliceSub && r[2] === a1.client.client_id)[0];
    const rv = await cli('grants', 'revoke', a1Grant);
    assert.equal(rv.code, 0, rv.stderr);
    assert.match(rv.stdout, /1 grant revoked/);
    await waitRefused(stack.url, '/mcp/whoami', a1.tokens.access_token);
    assert.notEqual((await callRoute(stack.url, '/mcp/whoami', a2.tokens.access_token)).status, 401);

    // An unknown grant is an error, not a silent success.
    const none = await cli('grants', 'revoke', 'no-such-grant');
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no such grant/);

    // Every grant of a user.
    const ru = await cli('grants', 'revoke', '--user', bobSub);
    assert.equal(ru.code, 0, ru.stderr);
    await waitRefused(stack.url, '/mcp/whoami', b1.tokens.access_token);

    // Clients: listed with their names; deleting one revokes its grants and tokens.
    const cl = await cli('clients', 'list');
    assert.equal(cl.code, 0, cl.stderr);
    for (const name of ['Alice One', 'Alice Two', 'Bob App']) assert.ok(cl.stdout.includes(name), cl.stdout);
    const del = await cli('clients', 'delete', a2.client.client_id);
    assert.equal(del.code, 0, del.stderr);
    await waitRefused(stack.url, '/mcp/whoami', a2.tokens.access_token);
    const after2 = await cli('clients', 'list');
    assert.ok(!after2.stdout.includes('Alice Two'), after2.stdout);
    const gone = await cli('clients', 'delete', a2.client.client_id);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /no such client/);
    const left = await cli('grants', 'list');
    assert.equal(left.stdout.trim().split('\n').length, 1, left.stdout); // only the header
  });

  test('usage errors exit 2; a dead store is an error within the deadline', async () => {
    assert.equal((await runCli(['grants'])).code, 2);
    assert.equal((await runCli(['grants', 'frobnicate', '-c', stack.gw.configPath])).code, 2);
    assert.equal((await runCli(['clients', 'delete', '-c', stack.gw.configPath])).code, 2);
  });
});
