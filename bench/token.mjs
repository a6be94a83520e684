// Obtains one real access token from a running mcpgate for the OAuth scenario of `make bench`,
// through the whole flow a client goes through: dynamic registration (RFC 7591), /authorize
// with PKCE S256 and `resource` (RFC 8707), mcpgate's consent page, the test IdP's login form
// (tests/idp, user alice), /callback, and the code exchange at /token. No token is made up.
//
//   node bench/token.mjs --base http://127.0.0.1:P --route /mcp > token-file
//
// Prints only the access token on stdout. Needs tests/idp/node_modules (npm ci in tests/idp).

import { randomBytes } from 'node:crypto';
import { loginViaForm, makePkce } from '../tests/idp/browserless.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (i % 2 === 0) acc.push([a.replace(/^--/, ''), all[i + 1]]);
  return acc;
}, []));
const base = args.base;
const resource = `${base}${args.route ?? '/mcp'}`;
const TIMEOUT_MS = 10000;

async function post(path, body, contentType) {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': contentType, accept: 'application/json' },
    body,
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

// A public client with a loopback redirect URI; nothing listens there, the flow stops at it.
const redirectUri = 'http://127.0.0.1:9/cb';
const reg = await post('/register', JSON.stringify({
  client_name: 'mcpgate bench',
  redirect_uris: [redirectUri],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
}), 'application/json');
if (reg.status !== 201) throw new Error(`registration: HTTP ${reg.status} ${reg.text.slice(0, 300)}`);
const clientId = reg.json.client_id;

const pkce = makePkce();
const state = randomBytes(16).toString('base64url');
const authorize = new URL(`${base}/authorize`);
for (const [k, v] of Object.entries({
  response_type: 'code',
  client_id: clientId,
  redirect_uri: redirectUri,
  code_challenge: pkce.challenge,
  code_challenge_method: 'S256',
  scope: 'mcp:tools',
  resource,
  state,
})) authorize.searchParams.set(k, v);

const callback = new URL(await loginViaForm({
  authorizeUrl: authorize.href,
  username: 'alice',
  password: 'alice-pass',
  // mcpgate's consent page: press Approve
  forms: [{ match: (f) => f.action === `${base}/authorize` && f.buttons.some((b) => b.value === 'approve'), button: 'approve' }],
  timeoutMs: 20000,
}));
const code = callback.searchParams.get('code');
if (!code || callback.searchParams.get('state') !== state) {
  throw new Error(`authorization failed: ${callback.search}`);
}

const tok = await post('/token', new URLSearchParams({
  grant_type: 'authorization_code',
  code,
  redirect_uri: redirectUri,
  client_id: clientId,
  code_verifier: pkce.verifier,
  resource,
}).toString(), 'application/x-www-form-urlencoded');
if (tok.status !== 200 || !tok.json?.access_token) throw new Error(`token: HTTP ${tok.status} ${tok.text.slice(0, 300)}`);
process.stdout.write(`${tok.json.access_token}\n`);
