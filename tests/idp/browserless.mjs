// A tiny form-following HTTP client for browser-free OAuth tests: fetch with `redirect: 'manual'`,
// a cookie jar, and a regex-based HTML form extractor that is good enough for pages we control
// (the test IdP's login form, mcpgate's consent page).
//
//   import { CookieJar, loginViaForm } from './browserless.mjs';
//   const jar = new CookieJar();
//   const callback = await loginViaForm({ authorizeUrl, username: 'alice', password: 'alice-pass', jar,
//     forms: [{ match: /\/consent/, button: 'approve' }] });   // extra pages: which button to press
//   new URL(callback).searchParams.get('code');
//
// No dependencies beyond Node >= 20.

import * as crypto from 'node:crypto';

// ---------------------------------------------------------------------------------------------
// cookies (RFC 6265, the parts a test needs: host-only/domain, path, expiry; ports are not part of
// a cookie's scope, as in browsers; Secure cookies are sent over http to loopback hosts only)

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function defaultPath(pathname) {
  if (!pathname.startsWith('/')) return '/';
  const i = pathname.lastIndexOf('/');
  return i <= 0 ? '/' : pathname.slice(0, i);
}

function pathMatches(reqPath, cookiePath) {
  if (reqPath === cookiePath) return true;
  if (!reqPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || reqPath[cookiePath.length] === '/';
}

function domainMatches(host, domain) {
  if (host === domain) return true;
  if (/^[\d.]+$/.test(host) || host.includes(':')) return false; // IP addresses: exact only
  return host.endsWith(`.${domain}`);
}

export class CookieJar {
  constructor() {
    /** @type {Array<{name:string,value:string,domain:string,hostOnly:boolean,path:string,expires:number,secure:boolean,httpOnly:boolean}>} */
    this.cookies = [];
  }

  /** Store the Set-Cookie headers of a response to `url`. */
  store(url, setCookieHeaders) {
    const u = new URL(url);
    for (const header of setCookieHeaders ?? []) this.#storeOne(u, header);
  }

  #storeOne(u, header) {
    const [pair, ...attrs] = header.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) return;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const host = u.hostname;
    const c = {
      name, value, domain: host, hostOnly: true, path: defaultPath(u.pathname),
      expires: Infinity, secure: false, httpOnly: false,
    };
    let maxAge;
    for (const attr of attrs) {
      const i = attr.indexOf('=');
      const k = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
      const v = i < 0 ? '' : attr.slice(i + 1).trim();
      if (k === 'domain' && v) {
        const d = v.replace(/^\./, '').toLowerCase();
        if (!domainMatches(host, d)) return; // a cookie for another domain: rejected
        c.domain = d;
        c.hostOnly = false;
      } else if (k === 'path') {
        c.path = v.startsWith('/') ? v : defaultPath(u.pathname);
      } else if (k === 'expires') {
        const t = Date.parse(v);
        if (!Number.isNaN(t)) c.expires = t;
      } else if (k === 'max-age') {
        if (/^-?\d+$/.test(v)) maxAge = Number(v);
      } else if (k === 'secure') {
        c.secure = true;
      } else if (k === 'httponly') {
        c.httpOnly = true;
      }
    }
    if (maxAge !== undefined) c.expires = maxAge <= 0 ? 0 : Date.now() + maxAge * 1000;
    this.cookies = this.cookies.filter((o) => !(o.name === c.name && o.domain === c.domain && o.path === c.path));
    if (c.expires > Date.now()) this.cookies.push(c);
  }

  /** The cookies that a request to `url` carries, most specific path first. */
  cookiesFor(url) {
    const u = new URL(url);
    const host = u.hostname;
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => c.expires > now);
    return this.cookies
      .filter((c) => (c.hostOnly ? c.domain === host : domainMatches(host, c.domain)))
      .filter((c) => pathMatches(u.pathname, c.path))
      .filter((c) => !c.secure || u.protocol === 'https:' || LOOPBACK.has(host))
      .sort((a, b) => b.path.length - a.path.length);
  }

  /** Value for a Cookie request header ('' when none). */
  header(url) {
    return this.cookiesFor(url).map((c) => `${c.name}=${c.value}`).join('; ');
  }

  /** The value of cookie `name` (scoped to `url` when given). */
  get(name, url) {
    const list = url ? this.cookiesFor(url) : this.cookies;
    return list.find((c) => c.name === name)?.value;
  }

  clear() { this.cookies = []; }
}

// ---------------------------------------------------------------------------------------------
// HTML forms

const ENTITIES = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', '#39': "'",
};

export function decodeEntities(s) {
  return String(s).replace(/&(#x[0-9a-f]+|#\d+|[a-z]+\d*);/gi, (m, e) => {
    if (e[0] === '#') {
      const n = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(n) ? String.fromCodePoint(n) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

function parseAttrs(s) {
  const attrs = {};
  const re = /([^\s"'=<>/]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  let m;
  while ((m = re.exec(s))) {
    const k = m[1].toLowerCase();
    if (!(k in attrs)) attrs[k] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

function stripTags(html) {
  return decodeEntities(html.replace(/<script[\s\S]*?<\/script>/gi, '')
    .replace(/<style[\s\S]*?<\/style>/gi, '')
    .replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();
}

// controls of a chunk of HTML: inputs, buttons, textareas, selects
function parseControls(html) {
  const controls = [];
  const re = /<(input|button|textarea|select)\b([^>]*)>(?:([\s\S]*?)<\/\1\s*>)?/gi;
  let m;
  while ((m = re.exec(html))) {
    const tag = m[1].toLowerCase();
    const a = parseAttrs(m[2]);
    const inner = m[3] ?? '';
    const base = {
      tag, name: a.name, id: a.id, form: a.form, disabled: 'disabled' in a,
    };
    if (tag === 'input') {
      const type = (a.type || 'text').toLowerCase();
      // void element: whatever the regex took as "inner" belongs to the rest of the page
      if (m[3] !== undefined) re.lastIndex = m.index + m[0].indexOf('>') + 1;
      if (type === 'submit' || type === 'image') {
        controls.push({ ...base, kind: 'button', type: 'submit', value: a.value ?? '', text: a.value ?? '' });
      } else if (type === 'button' || type === 'reset' || type === 'file') {
        // not submitted
      } else {
        controls.push({
          ...base, kind: 'field', type, value: a.value ?? (type === 'checkbox' || type === 'radio' ? 'on' : ''), checked: 'checked' in a,
        });
      }
    } else if (tag === 'button') {
      const type = (a.type || 'submit').toLowerCase();
      if (type === 'submit') {
        controls.push({
          ...base, kind: 'button', type, value: a.value ?? '', text: stripTags(inner),
        });
      }
    } else if (tag === 'textarea') {
      controls.push({ ...base, kind: 'field', type: 'textarea', value: decodeEntities(inner) });
    } else {
      const opts = [...inner.matchAll(/<option\b([^>]*)>([\s\S]*?)(?=<option\b|<\/select|$)/gi)]
        .map((o) => {
          const oa = parseAttrs(o[1]);
          return { value: oa.value ?? stripTags(o[2]), selected: 'selected' in oa };
        });
      const sel = opts.find((o) => o.selected) ?? opts[0];
      controls.push({ ...base, kind: 'field', type: 'select', value: sel?.value ?? '' });
    }
  }
  return controls;
}

/**
 * Extract the forms of an HTML page.
 * @returns {Array<{id?:string,name?:string,action:string,method:string,fields:Array,buttons:Array}>}
 *   action is absolute (resolved against baseUrl), method is 'GET' or 'POST'.
 */
export function parseForms(html, baseUrl) {
  const forms = [];
  const re = /<form\b([^>]*)>([\s\S]*?)<\/form\s*>/gi;
  let m;
  while ((m = re.exec(html))) {
    const a = parseAttrs(m[1]);
    const controls = parseControls(m[2]);
    forms.push({
      id: a.id,
      name: a.name,
      action: new URL(a.action || baseUrl, baseUrl).href,
      method: (a.method || 'GET').toUpperCase() === 'POST' ? 'POST' : 'GET',
      fields: controls.filter((c) => c.kind === 'field'),
      buttons: controls.filter((c) => c.kind === 'button'),
    });
  }
  // controls outside any <form> but attached with form="id"
  const outside = html.replace(/<form\b[^>]*>[\s\S]*?<\/form\s*>/gi, '');
  for (const c of parseControls(outside)) {
    const f = c.form && forms.find((x) => x.id === c.form);
    if (f) (c.kind === 'field' ? f.fields : f.buttons).push(c);
  }
  return forms;
}

function findButton(form, which) {
  if (which === undefined || which === null) return form.buttons.find((b) => !b.disabled);
  return form.buttons.find((b) => b.id === which)
    ?? form.buttons.find((b) => b.name === which)
    ?? form.buttons.find((b) => b.value === which || b.text === which);
}

/**
 * The request a browser makes when `button` (id, name, value or text; default: the first submit
 * button) of `form` is pressed, with `fields` overriding/adding values.
 */
export function formRequest(form, { fields = {}, button } = {}) {
  const params = new URLSearchParams();
  const overridden = new Set(Object.keys(fields));
  for (const f of form.fields) {
    if (!f.name || f.disabled || overridden.has(f.name)) continue;
    if ((f.type === 'checkbox' || f.type === 'radio') && !f.checked) continue;
    params.append(f.name, f.value);
  }
  for (const [k, v] of Object.entries(fields)) {
    for (const one of Array.isArray(v) ? v : [v]) params.append(k, String(one));
  }
  const b = findButton(form, button);
  if (button !== undefined && button !== null && !b) {
    throw new Error(`no button ${JSON.stringify(button)} in form ${form.id ?? form.action}; have: ${form.buttons.map((x) => x.id ?? x.name ?? x.text).join(', ')}`);
  }
  if (b?.name && !overridden.has(b.name)) params.append(b.name, b.value);
  if (form.method === 'GET') {
    const u = new URL(form.action);
    u.search = params.toString();
    return { url: u.href, method: 'GET' };
  }
  return {
    url: form.action,
    method: 'POST',
    body: params.toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  };
}

// ---------------------------------------------------------------------------------------------
// requests

/**
 * One HTTP request with the jar's cookies, never following redirects; stores Set-Cookie.
 * Returns the fetch Response (body unread).
 */
export async function request(url, {
  jar, method = 'GET', headers = {}, body, timeoutMs = 10000,
} = {}) {
  const h = { 'user-agent': 'mcpgate-tests-browserless/1', accept: 'text/html,application/json;q=0.9,*/*;q=0.8', ...headers };
  const cookie = jar?.header(url);
  if (cookie) h.cookie = cookie;
  const res = await fetch(url, {
    method, headers: h, body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs),
  });
  jar?.store(url, res.headers.getSetCookie());
  return res;
}

function sameEndpoint(url, target) {
  try {
    const a = new URL(url);
    const b = new URL(target);
    return a.origin === b.origin && a.pathname === b.pathname;
  } catch {
    return false;
  }
}

function matchesRule(rule, form, pg) {
  const { match } = rule;
  if (match === undefined) return true;
  if (typeof match === 'function') return !!match(form, pg);
  if (match instanceof RegExp) {
    return match.test(form.action) || (form.id !== undefined && match.test(form.id)) || match.test(pg.url);
  }
  return form.id === match || form.action.includes(match) || pg.url.includes(match);
}

function isLoginForm(form) {
  return form.fields.some((f) => f.type === 'password');
}

/** The text of the page's error message (id="error", class containing "error", or role=alert). */
export function pageError(html) {
  const m = /<([a-z0-9]+)\b[^>]*(?:id="error"|class="[^"]*\berror\b[^"]*"|role="alert")[^>]*>([\s\S]*?)<\/\1>/i.exec(html);
  return m ? stripTags(m[2]) : undefined;
}

export class FlowError extends Error {
  constructor(message, result) {
    super(message);
    this.name = 'FlowError';
    this.result = result;
  }
}

/**
 * Follow a browser flow from `startUrl`: redirects (301/302/303 become GET; 307/308 keep the
 * method), the IdP login form (filled with username/password), and pages whose forms match one of
 * `forms` (rules `{match, button, fields}`: match is a string (form id, or a substring of the form
 * action or page URL), a RegExp (tested against the same) or a function (form, page) => bool;
 * button is a submit button's id, name, value or text; fields override/add form values).
 *
 * Stops at the first redirect whose target is `stopAt` (a URL compared by origin + path, or a
 * function url => bool), or at a page it does not know how to go on from.
 *
 * @returns {Promise<{done:boolean,url:string,status?:number,html?:string,steps:Array<{method:string,url:string,status:number}>}>}
 *   done: true when a redirect to stopAt was reached (url is its target); otherwise url/status/html
 *   describe the page it stopped on.
 */
export async function followFlow(startUrl, {
  jar = new CookieJar(),
  username,
  password,
  forms: rules = [],
  stopAt,
  maxSteps = 30,
  timeoutMs = 15000,
  requestTimeoutMs = 10000,
  headers = {},
  log = () => {},
} = {}) {
  const stop = typeof stopAt === 'function' ? stopAt : (u) => stopAt !== undefined && sameEndpoint(u, stopAt);
  const deadline = Date.now() + timeoutMs;
  const steps = [];
  let req = { url: startUrl, method: 'GET' };
  let loginTries = 0;

  for (let i = 0; i < maxSteps; i += 1) {
    const left = deadline - Date.now();
    if (left <= 0) throw new FlowError(`flow timed out after ${timeoutMs} ms at ${req.method} ${req.url}`, { steps });
    const res = await request(req.url, {
      jar,
      method: req.method,
      body: req.body,
      headers: { ...headers, ...req.headers },
      timeoutMs: Math.min(requestTimeoutMs, left),
    });
    steps.push({ method: req.method, url: req.url, status: res.status });
    log(`${req.method} ${req.url} -> ${res.status}`);

    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.arrayBuffer().catch(() => {});
      const next = new URL(location, req.url).href;
      if (stop(next)) return { done: true, url: next, steps };
      req = (res.status === 307 || res.status === 308) ? { ...req, url: next } : { url: next, method: 'GET' };
      continue;
    }

    const html = await res.text();
    const pg = { url: req.url, status: res.status, html };
    const found = parseForms(html, req.url);

    let next;
    for (const rule of rules) {
      const form = found.find((f) => matchesRule(rule, f, pg));
      if (form) {
        next = formRequest(form, { fields: rule.fields, button: rule.button });
        break;
      }
    }
    if (!next) {
      const login = found.find(isLoginForm);
      if (login && username !== undefined) {
        if (loginTries > 0) {
          throw new FlowError(`login as ${username} failed: ${pageError(html) ?? 'the login form came back'}`, { ...pg, done: false, steps });
        }
        loginTries += 1;
        const pw = login.fields.find((f) => f.type === 'password');
        const user = login.fields.find((f) => f.name === 'username')
          ?? login.fields.find((f) => ['text', 'email'].includes(f.type) && f.name);
        const fields = { [pw.name]: password ?? '' };
        if (user) fields[user.name] = username;
        next = formRequest(login, { fields, button: login.buttons.find((b) => b.id === 'sign-in') ? 'sign-in' : undefined });
      }
    }
    if (!next) return { done: false, ...pg, steps };
    if (stop(next.url)) return { done: true, url: next.url, steps, formPost: next };
    req = next;
  }
  throw new FlowError(`flow did not finish within ${maxSteps} steps`, { steps });
}

/**
 * Log in through a browser-style authorization flow and return the final redirect URL (the one
 * pointing at the client's redirect_uri, carrying ?code=&state= or ?error=).
 *
 * @param {object} o
 * @param {string} o.authorizeUrl  where the flow starts (an IdP's or mcpgate's /authorize URL)
 * @param {string} [o.username]    filled into the first form with a password field
 * @param {string} [o.password]
 * @param {CookieJar} [o.jar]      reuse to keep IdP/gateway sessions between flows
 * @param {string|Function} [o.redirectUri]  where to stop; default: authorizeUrl's redirect_uri
 * @param {Array} [o.forms]        rules for other pages, e.g. [{ match: /consent/, button: 'approve' }]
 * Other options as for followFlow (timeoutMs, maxSteps, headers, log).
 * Throws FlowError (with .result) when the flow ends anywhere else, or the login is refused.
 */
export async function loginViaForm({
  authorizeUrl, username, password, jar = new CookieJar(), redirectUri, ...rest
}) {
  const stopAt = redirectUri ?? new URL(authorizeUrl).searchParams.get('redirect_uri') ?? undefined;
  if (!stopAt) throw new TypeError('loginViaForm: no redirectUri and no redirect_uri in authorizeUrl');
  const result = await followFlow(authorizeUrl, {
    ...rest, jar, username, password, stopAt,
  });
  if (!result.done) {
    const why = pageError(result.html ?? '') ?? stripTags(result.html ?? '').slice(0, 300);
    throw new FlowError(`flow stopped at ${result.url} (HTTP ${result.status}): ${why}`, result);
  }
  return result.url;
}

// ---------------------------------------------------------------------------------------------
// OAuth bits that tests keep needing

/** A PKCE S256 pair. */
export function makePkce() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge, method: 'S256' };
}

export function randomToken(bytes = 16) {
  return crypto.randomBytes(bytes).toString('base64url');
}

/** HTTP Basic credentials as RFC 6749 §2.3.1 wants them (form-urlencoded id and secret). */
export function basicAuth(id, secret) {
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}
