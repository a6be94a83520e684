// The command line: --version, --help, usage errors, check-config on the
// shipped configs and on broken ones, and -c with a broken file.
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { REPO, assertNoSanitizerReport, gatewayConfig, runCli, tmpDir, writeSecret, writeTemp } from '../lib/harness.mjs';
import { WHOAMI_BIN } from '../lib/mcp.mjs';

const VERSION = fs.readFileSync(path.join(REPO, 'VERSION'), 'utf8').trim();
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const noSanitizer = (r) => assert.doesNotMatch(r.stderr, /AddressSanitizer|LeakSanitizer|runtime error:/);

/** "path:line:col: key.path: message" */
const ERROR_LINE = (file) => new RegExp(`^${escapeRe(file)}:(\\d+):(\\d+): ([A-Za-z0-9_.\\[\\]-]+): .+$`);

describe('cli', () => {
  test('--version prints "mcpgate <version>" and exits 0', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`^mcpgate ${escapeRe(VERSION)}\\b`));
      noSanitizer(r);
    }
  });

  test('the binary under test is the sanitizer build, and the harness catches reports', async () => {
    const r = await runCli(['--version'], { env: { ASAN_OPTIONS: 'help=1' } });
    assert.equal(r.code, 0);
    assert.match(r.stdout + r.stderr, /Available flags for AddressSanitizer/,
      'MCPGATE_BIN is not built with -fsanitize=address (run `make san-binary`)');
    assert.throws(() => assertNoSanitizerReport('x\n==1==ERROR: AddressSanitizer: heap-use-after-free\n'), /sanitizer report/);
    assert.throws(() => assertNoSanitizerReport('gateway/http.c:10:5: runtime error: signed integer overflow'), /sanitizer report/);
    assert.doesNotThrow(() => assertNoSanitizerReport('{"level":"info","msg":"ok"}\n'));
  });

  test('--help exits 0 and mentions check-config', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await runCli([flag]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /check-config/);
      assert.match(r.stdout, /-c/);
      noSanitizer(r);
    }
  });

  test('no arguments: exit 2 with usage on stderr', async () => {
    const r = await runCli([]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /usage:/i);
    assert.equal(r.stdout, '');
    noSanitizer(r);
  });

  test('an unknown option or a bad --log-level: exit 2', async () => {
    const a = await runCli(['--no-such-option']);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /usage:/i);
    const b = await runCli(['-c', '/nonexistent.yaml', '--log-level', 'loud']);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /log level/);
    const c = await runCli(['check-config']);
    assert.equal(c.code, 2);
    assert.match(c.stderr, /usage:/i);
    for (const r of [a, b, c]) noSanitizer(r);
  });

  test('check-config on a valid file: exit 0, "ok" on the first line, then a summary', async () => {
    const file = writeTemp('valid.yaml', gatewayConfig({ port: 18080 }));
    const r = await runCli(['check-config', file]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], 'ok');
    assert.match(r.stdout, /127\.0\.0\.1:18080/);
    assert.match(r.stdout, /store: memory/);
    noSanitizer(r);
  });

  test('check-config on every deploy/conf/*.yaml: exit 0 and "ok" first', async (t) => {
    const dir = path.join(REPO, 'deploy', 'conf');
    const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort() : [];
    if (files.length === 0) {
      t.skip('deploy/conf/ has no *.yaml yet');
      return;
    }
    const scratch = tmpDir('mcpgate-cli-');
    for (const f of files) {
      await t.test(f, async () => {
        const file = path.join(dir, f);
        const env = envFor(fs.readFileSync(file, 'utf8'), scratch);
        const r = await runCli(['check-config', file], { env });
        assert.equal(r.code, 0, `${f} (env ${JSON.stringify(env)}):\n${r.stderr}`);
        assert.equal(r.stdout.split('\n')[0], 'ok', `${f}: ${r.stdout}`);
        noSanitizer(r);
      });
    }
  });

  test('check-config on the container config (deploy/kubernetes/mcpgate.yaml, also mounted by docker-compose): exit 0', async () => {
    const file = path.join(REPO, 'deploy', 'kubernetes', 'mcpgate.yaml');
    const scratch = tmpDir('mcpgate-cli-');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeTemp('identity-es256.pem', privateKey.export({ type: 'pkcs8', format: 'pem' }), scratch);
    writeTemp('mcpgate-secret', randomBytes(48).toString('base64'), scratch);
    writeTemp('idp-client-secret', 'client-secret\n', scratch);
    writeTemp('redis-password', 'redis-password\n', scratch);
    // The files the Deployment mounts under /run/secrets, and the binary the image ships.
    const text = fs.readFileSync(file, 'utf8').replaceAll('/run/secrets/', `${scratch}/`)
      .replaceAll('/usr/local/bin/whoami-server', WHOAMI_BIN);
    const copy = writeTemp('container.yaml', text, scratch);
    const r = await runCli(['check-config', copy], { env: { INSTANCE_ADDR: '10.1.2.3' } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split('\n')[0], 'ok', r.stdout);
    assert.match(r.stdout, /redis:\/\/redis:6379/, 'a service name is a valid Redis host');
    noSanitizer(r);
    const compose = fs.readFileSync(path.join(REPO, 'deploy', 'docker', 'docker-compose.yml'), 'utf8');
    assert.match(compose, /\.\.\/kubernetes\/mcpgate\.yaml:\/etc\/mcpgate\/mcpgate\.yaml/, 'compose mounts the same file');
    const kustomize = fs.readFileSync(path.join(REPO, 'deploy', 'kubernetes', 'kustomization.yaml'), 'utf8');
    assert.match(kustomize, /files: \[mcpgate\.yaml\]/, 'the ConfigMap is made from the same file');
  });

  test('check-config on a broken file: exit 2, every error as path:line:col: key.path: message', async () => {
    const text = [
      'server:', //                       1
      '  listen: ["127.0.0.1:99999"]', // 2  port out of range
      '  public_url: http://127.0.0.1:8080/', // 3 trailing slash
      '  limits: { max_body: 12 parsecs }', // 4 bad size
      'store:', //                        5
      '  backend: mongodb', //            6  bad enum
      'bogus_section: {}', //             7  unknown key
      'log: { level: on }', //            8  YAML 1.1 boolean / bad level
      '',
    ].join('\n');
    const file = writeTemp('broken.yaml', text);
    const r = await runCli(['check-config', file]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trim().split('\n');
    const errors = lines.filter((l) => l.startsWith(`${file}:`) && !/^\S+: \d+ errors?$/.test(l));
    assert.ok(errors.length >= 5, `expected at least 5 errors, got:\n${r.stderr}`);
    for (const l of errors) assert.match(l, ERROR_LINE(file), `malformed error line: ${l}`);
    // The errors point at the right lines and keys.
    const at = (line, keyRe) => errors.some((l) => {
      const m = ERROR_LINE(file).exec(l);
      return m && Number(m[1]) === line && keyRe.test(m[3]);
    });
    assert.ok(at(2, /^server\.listen/), `no error for server.listen on line 2:\n${r.stderr}`);
    assert.ok(at(3, /^server\.public_url$/), `no error for server.public_url on line 3:\n${r.stderr}`);
    assert.ok(at(4, /^server\.limits\.max_body$/), `no error for max_body on line 4:\n${r.stderr}`);
    assert.ok(at(6, /^store\.backend$/), `no error for store.backend on line 6:\n${r.stderr}`);
    assert.ok(at(7, /bogus_section/), `no error for bogus_section on line 7:\n${r.stderr}`);
    assert.ok(at(8, /^log\.level$/), `no error for log.level on line 8:\n${r.stderr}`);
    // A closing count line.
    assert.match(lines[lines.length - 1], new RegExp(`^${escapeRe(file)}: ${errors.length} errors?$`));
    noSanitizer(r);
  });

  test('check-config: a missing ${VAR} without default is an error naming the variable', async () => {
    const file = writeTemp('envvar.yaml', gatewayConfig({ port: 18081 }).replace(
      'public_url: http://127.0.0.1:18081', 'public_url: "${MCPGATE_TEST_UNSET_URL}"'));
    const env = { MCPGATE_TEST_UNSET_URL: undefined };
    const r = await runCli(['check-config', file], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr.split('\n')[0], ERROR_LINE(file));
    assert.match(r.stderr.split('\n')[0], /^[^:]+:3:\d+: server\.public_url: .*MCPGATE_TEST_UNSET_URL/);
    const ok = await runCli(['check-config', file], { env: { MCPGATE_TEST_UNSET_URL: 'http://127.0.0.1:18081' } });
    assert.equal(ok.code, 0, ok.stderr);
    noSanitizer(r);
  });

  test('check-config on a missing file and on a directory: exit 2, no crash', async () => {
    for (const target of ['/nonexistent/mcpgate.yaml', tmpDir('mcpgate-cli-dir-')]) {
      const r = await runCli(['check-config', target]);
      assert.equal(r.code, 2, `${target}: ${r.stderr}`);
      assert.ok(r.stderr.includes(target), r.stderr);
      noSanitizer(r);
    }
  });

  test('mcpgate -c broken.yaml: exit 2 with path:line:col messages, no crash', async () => {
    const file = writeTemp('broken-serve.yaml', 'server:\n  listen: ["127.0.0.1:8080"]\n  public_url: http://127.0.0.1:8080\n  typo_key: 1\n');
    const r = await runCli(['-c', file]);
    assert.equal(r.code, 2);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith(`${file}:`) && !/: \d+ errors?$/.test(l));
    assert.ok(errors.length >= 1, r.stderr);
    for (const l of errors) assert.match(l, ERROR_LINE(file));
    assert.ok(errors.some((l) => l.startsWith(`${file}:4:`) && /typo_key/.test(l)), r.stderr);
    noSanitizer(r);
  });

  test('garbage YAML, binary junk and an empty file are refused cleanly', async () => {
    const cases = {
      'tabs.yaml': 'server:\n\tlisten: x\n',
      'binary.yaml': randomBytes(512),
      'empty.yaml': '',
      'list.yaml': '- a\n- b\n',
      'anchor.yaml': 'server: &s\n  listen: ["127.0.0.1:8080"]\n  public_url: http://127.0.0.1:8080\nx: *s\n',
      'deep.yaml': `${'['.repeat(5000)}${']'.repeat(5000)}\n`,
    };
    for (const [name, content] of Object.entries(cases)) {
      const file = writeTemp(name, content);
      const r = await runCli(['check-config', file]);
      assert.equal(r.code, 2, `${name}: exit ${r.code} signal ${r.signal}\n${r.stderr.slice(0, 2000)}`);
      assert.ok(r.stderr.includes(file), `${name}: ${r.stderr.slice(0, 500)}`);
      noSanitizer(r);
    }
  });
});

/**
 * Plausible values for the ${VAR} references of a config: every variable
 * without a default, plus the *_FILE ones that have a default (the defaults
 * point at /etc/mcpgate/…, which a test machine does not have). File-ish
 * names get a temp file (48 random bytes; a printable line for client
 * secrets and passwords; an ES256 PEM for signing keys),
 * URL-ish names a URL, the rest a short word.
 */
function envFor(text, dir) {
  const env = {};
  for (const m of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}/g)) {
    const name = m[1];
    const hasDefault = m[2] !== undefined;
    const n = name.toUpperCase();
    if (name in env || process.env[name] !== undefined) continue;
    if (hasDefault && !/FILE/.test(n)) continue;
    if (/SIGNING|IDENTITY|PEM|ES256|_KEY_FILE|PRIVATE_KEY/.test(n)) {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      env[name] = writeTemp(`${name.toLowerCase()}.pem`, privateKey.export({ type: 'pkcs8', format: 'pem' }), dir);
    } else if (/FILE|PATH/.test(n) && /CLIENT_SECRET|PASSWORD|TOKEN/.test(n)) {
      // A text secret (sent to the IdP or redis): printable, newline-terminated.
      env[name] = writeSecret(`${randomBytes(32).toString('base64url')}\n`, dir);
    } else if (/FILE|PATH/.test(n)) {
      env[name] = writeSecret(randomBytes(48), dir); // a binary key (oauth.secret_file)
    } else if (/REDIS/.test(n) && /URL|ADDR/.test(n)) {
      env[name] = 'redis://127.0.0.1:6379/0';
    } else if (/PUBLIC_URL|BASE_URL|ISSUER|URL|ORIGIN/.test(n)) {
      env[name] = 'https://mcp.example.com';
    } else if (/DOMAIN|HOST/.test(n)) {
      env[name] = 'idp.example.com';
    } else if (/TENANT/.test(n)) {
      env[name] = '00000000-0000-4000-8000-000000000000';
    } else if (/SECRET|PASSWORD|TOKEN/.test(n)) {
      env[name] = randomBytes(24).toString('hex');
    } else if (/PORT/.test(n)) {
      env[name] = '8080';
    } else if (/ORG/.test(n)) {
      env[name] = 'myorg';
    } else {
      env[name] = 'test-value';
    }
  }
  return env;
}
