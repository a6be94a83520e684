// Headless Chromium for the page tests (Debian's package, driven by
// playwright-core). Missing or not launching is a FAILURE with a clear
// message, never a silent skip.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

/** Installs Debian's chromium when it is missing and we are root; returns a reason when it stays missing. */
export function ensureChromium() {
  if (fs.existsSync(CHROMIUM)) return null;
  if (process.getuid?.() !== 0) return `${CHROMIUM} is missing and this is not root: run \`apt-get install -y chromium\``;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => spawnSync('apt-get', ['install', '-y', '-q', 'chromium'], { env, encoding: 'utf8', timeout: 240000 });
  let r = install();
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-q'], { env, encoding: 'utf8', timeout: 120000 });
    r = install();
  }
  if (fs.existsSync(CHROMIUM)) return null;
  return `apt-get install -y chromium failed (status ${r.status}): ${(r.stderr || r.error?.message || '').slice(-1000)}`;
}

/** A launched headless Chromium, or an assertion failure saying why not. */
export async function launchChromium() {
  const missing = ensureChromium();
  assert.equal(missing, null, `Chromium is not available: ${missing}`);
  try {
    return await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30000 });
  } catch (e) {
    return assert.fail(`Chromium (${CHROMIUM}) did not launch: ${e.message}`);
  }
}
