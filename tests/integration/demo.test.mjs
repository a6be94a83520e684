// make demo (scripts/demo.sh) brings up redis, the demo IdP and mcpgate in
// front of whoami-server: /healthz and /readyz answer 200 within 10 s of the
// start, the protected route challenges like a real deployment, and SIGTERM
// stops every process it started.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { REPO, MCPGATE_BIN, assertNoSanitizerReport, canConnect, freePort, sleep, tmpDir } from '../lib/harness.mjs';

let demo;
after(() => {
  if (demo && demo.exitCode === null) demo.kill('SIGKILL');
});

async function status(url) {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(1000) })).status;
  } catch {
    return 0;
  }
}

test('make demo: ready within 10 s, a working OAuth route, a clean stop', { timeout: 60000 }, async () => {
  const port = await freePort();
  const idpPort = await freePort();
  const dir = tmpDir('mcpgate-demo-');
  const env = {
    ...process.env,
    MCPGATE_PORT: String(port),
    IDP_PORT: String(idpPort),
    DEMO_DIR: dir,
    MCPGATE_BIN,
    WHOAMI_BIN: path.join(REPO, 'build', 'san', 'examples', 'whoami-server'),
  };
  const started = Date.now();
  demo = spawn('sh', ['scripts/demo.sh'], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  demo.stdout.on('data', (d) => (out += d));
  demo.stderr.on('data', (d) => (out += d));
  const base = `http://127.0.0.1:${port}`;
  let ready = false;
  while (Date.now() - started < 10000) {
    if ((await status(`${base}/readyz`)) === 200) {
      ready = true;
      break;
    }
    await sleep(100);
  }
  const elapsed = Date.now() - started;
  assert.ok(ready, `/readyz did not answer 200 within 10 s:\n${out}`);
  assert.equal(await status(`${base}/healthz`), 200);
  console.log(`# demo ready after ${elapsed} ms`);

  // The route is protected exactly as in production.
  const r = await fetch(`${base}/mcp/whoami`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}',
  });
  assert.equal(r.status, 401);
  assert.match(r.headers.get('www-authenticate'), /resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp\/whoami"/);
  for (let i = 0; i < 50 && !/alice \/ alice-pass/.test(out); i++) await sleep(100);
  assert.match(out, /alice \/ alice-pass/, 'the demo prints the users to sign in with');

  demo.kill('SIGTERM');
  const code = await new Promise((resolve) => demo.once('exit', resolve));
  assert.equal(code, 0, out);
  await sleep(300);
  assert.equal(await canConnect(port), false, 'mcpgate still listens after the demo stopped');
  assert.equal(await canConnect(idpPort), false, 'the IdP still listens after the demo stopped');
  assertNoSanitizerReport(fs.readFileSync(path.join(dir, 'mcpgate.log'), 'utf8'));
});
