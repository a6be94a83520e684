#!/usr/bin/env node
// Installs what the end-to-end suites need, idempotently (a no-op when all is there):
//   - npm packages of tests/e2e (@modelcontextprotocol/sdk, playwright-core) and of the
//     test IdP (tests/idp), from their lock files (`npm ci`);
//   - Debian's chromium for consent_browser.test.mjs (apt-get, only as root).
//
//   node tests/e2e/setup.mjs            # exit 0 when everything is in place
//
// tests/run.sh runs it before the e2e suites. Every step is bounded in time.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
let failed = false;

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300000, ...opts });
  return { ok: r.status === 0, out: `${r.stdout || ''}${r.stderr || ''}${r.error ? r.error.message : ''}` };
}

/** npm ci in DIR unless node_modules matches the lock file already. */
function npmCi(dir) {
  const lock = path.join(dir, 'package-lock.json');
  const stamp = path.join(dir, 'node_modules', '.package-lock.json');
  if (fs.existsSync(stamp) && fs.statSync(stamp).mtimeMs >= fs.statSync(lock).mtimeMs) return;
  const r = run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir });
  if (!r.ok) {
    failed = true;
    console.error(`setup: npm ci in ${path.relative(REPO, dir)} failed:\n${r.out.slice(-3000)}`);
  } else {
    console.log(`setup: npm ci in ${path.relative(REPO, dir)}`);
  }
}

npmCi(HERE);
npmCi(path.join(REPO, 'tests', 'idp'));

if (!fs.existsSync(CHROMIUM)) {
  if (process.getuid?.() === 0) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = run('apt-get', ['install', '-y', '-q', 'chromium'], { env });
    if (!r.ok) {
      run('apt-get', ['update', '-q'], { env });
      r = run('apt-get', ['install', '-y', '-q', 'chromium'], { env });
    }
    if (!fs.existsSync(CHROMIUM)) {
      failed = true;
      console.error(`setup: apt-get install -y chromium failed:\n${r.out.slice(-3000)}`);
    } else {
      console.log('setup: installed chromium');
    }
  } else {
    failed = true;
    console.error(`setup: ${CHROMIUM} is missing; install it with \`apt-get install -y chromium\` (as root)`);
  }
}

process.exit(failed ? 1 : 0);
