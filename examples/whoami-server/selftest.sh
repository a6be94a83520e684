#!/bin/sh
# Self-check of the whoami example server, without mcpgate.
#
#   examples/whoami-server/selftest.sh [path/to/whoami-server]
#
# Part 1 pipes a scripted conversation into the binary and checks every
# answer. Part 2 drives the binary from node for what needs timing: progress,
# ping during a slow call, cancellation, sampling and elicitation round trips,
# 16 MiB lines, crashes, SIGTERM and EOF. Prints "ok"/"FAIL" per check and
# exits non-zero on any failure. Needs node (no npm packages).
set -u
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
BIN=${1:-${WHOAMI_BIN:-}}
if [ -z "$BIN" ]; then
    for b in build/san/examples/whoami-server build/rel/examples/whoami-server; do
        [ -x "$b" ] && BIN=$b && break
    done
fi
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    echo "selftest: no whoami-server binary (make build/rel/examples/whoami-server)" >&2
    exit 2
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/whoami-selftest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# ---- part 1: a scripted conversation through a pipe ------------------------
# 2025-03-26, the one revision with JSON-RPC batches.
cat >"$tmp/in.jsonl" <<'EOF'
{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"selftest","version":"1"}}}
{"jsonrpc":"2.0","method":"notifications/initialized"}
{"jsonrpc":"2.0","id":2,"method":"tools/list"}
{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{},"_meta":{"io.mcpgate/principal":{"sub":"alice-123","roles":["manager"]}}}}
{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello\nworld \u00e9"}}}
{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":40}}}
{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"add","arguments":{"a":0.5,"b":"x"}}}
this is not json
{"jsonrpc":"2.0","id":7,"method":"ping"}
[{"jsonrpc":"2.0","id":"b1","method":"ping"},{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}},{"jsonrpc":"2.0","id":"b2","method":"tools/call","params":{"name":"echo","arguments":{"text":"in a batch"}}},42]
{"jsonrpc":"2.0","id":8,"method":"no/such/method"}
{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"no_such_tool"}}
{"jsonrpc":"2.0","id":10,"method":"resources/list"}
{"jsonrpc":"2.0","id":11,"method":"resources/read","params":{"uri":"whoami://identity"}}
{"jsonrpc":"2.0","id":12,"method":"resources/read","params":{"uri":"whoami://nobody"}}
{"jsonrpc":"2.0","id":13,"method":"prompts/list"}
{"jsonrpc":"2.0","id":14,"method":"prompts/get","params":{"name":"greet","arguments":{"name":"Bob"}}}
{"jsonrpc":"2.0","id":15,"method":"prompts/get","params":{"name":"greet"}}
{"jsonrpc":"2.0","id":16,"method":"logging/setLevel","params":{"level":"debug"}}
{"jsonrpc":"2.0","id":17,"method":"logging/setLevel","params":{"level":"loud"}}
{"jsonrpc":"2.0","id":18,"method":"tools/call","params":{"name":"manager_report"}}
{"jsonrpc":"2.0","id":19,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"again","version":"1"}}}
{"jsonrpc":"2.0","id":null,"method":"ping"}
{"jsonrpc":"2.0","id":20,"method":"tools/call","params":"not an object"}
[]
{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"env_dump"}}
EOF
env -i PATH=/usr/bin:/bin MCP_USER_SUB=alice-123 MCP_USER_NAME="Alice Example" \
    MCP_USER_EMAIL=alice@example.com MCP_USER_ROLES="manager, staff" MCP_USER_GROUPS= \
    MCP_SCOPES="openid mcp:tools" MCP_CLIENT_ID=client-xyz MCP_IDENTITY_JWT=eyJhbGciOiJFUzI1NiJ9.e30.c2ln \
    ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
    "$BIN" <"$tmp/in.jsonl" >"$tmp/out.jsonl" 2>"$tmp/err.txt"
echo $? >"$tmp/rc"

cat >"$tmp/check1.js" <<'EOF'
const fs = require('fs');
const dir = process.argv[2];
let passed = 0, failed = 0;
const check = (name, ok, detail) => {
    if (ok) { passed++; console.log('ok   ' + name); }
    else { failed++; console.log('FAIL ' + name + (detail !== undefined ? ': ' + JSON.stringify(detail).slice(0, 400) : '')); }
};
const raw = fs.readFileSync(dir + '/out.jsonl', 'utf8');
const lines = raw.split('\n');
check('stdout ends with a newline', raw.endsWith('\n'));
lines.pop();
let msgs = [];
let allJson = true;
for (const l of lines) { try { msgs.push(JSON.parse(l)); } catch (e) { allJson = false; } }
check('every stdout line is one JSON message', allJson && lines.length > 0, lines.length);
check('exit status 0 at EOF', fs.readFileSync(dir + '/rc', 'utf8').trim() === '0');
const flat = msgs.flatMap(m => Array.isArray(m) ? [] : [m]);
const byId = id => flat.find(m => m.id === id);
const text = r => r && r.result && r.result.content && r.result.content[0].text;

const init = byId(1);
check('initialize: version 2025-03-26', init && init.result.protocolVersion === '2025-03-26', init);
check('initialize: capabilities', init && JSON.stringify(init.result.capabilities) ===
      '{"tools":{"listChanged":false},"resources":{},"prompts":{},"logging":{}}', init);
check('initialize: serverInfo', init && init.result.serverInfo.name === 'whoami-server' &&
      typeof init.result.serverInfo.version === 'string');
const tools = (byId(2) || {result: {tools: []}}).result.tools;
const names = tools.map(t => t.name).sort().join(',');
check('tools/list: all tools', names === 'add,big_line,crash,echo,elicit,env_dump,manager_report,sample,slow,stderr,whoami', names);
check('tools/list: every inputSchema is an object schema', tools.every(t => t.inputSchema && t.inputSchema.type === 'object'));
check('tools/list: no 2025-06-18 fields for a 2025-03-26 client', tools.every(t => !('title' in t) && !('outputSchema' in t)));
const who = byId(3);
const wt = text(who) || '';
check('whoami: subject, name, email', wt.includes('alice-123') && wt.includes('Alice Example') && wt.includes('alice@example.com'), wt);
check('whoami: roles and scopes split', wt.includes('manager, staff') && wt.includes('openid, mcp:tools'), wt);
check('whoami: JWT length, never the JWT', wt.includes('set, 29 bytes') && !raw.includes('eyJhbGciOiJFUzI1NiJ9'), wt);
check('whoami: _meta principal shown', wt.includes('"sub":"alice-123"'), wt);
const wj = who && JSON.parse(who.result.content[1].text);
check('whoami: JSON block', wj && wj.env.sub === 'alice-123' && wj.env.roles.join() === 'manager,staff' &&
      Array.isArray(wj.env.groups) && wj.env.groups.length === 0 && wj.env.client_id === 'client-xyz' &&
      wj.env.identity_jwt.present === true && wj.meta.roles[0] === 'manager', wj);
check('whoami: no structuredContent before 2025-06-18', who && !('structuredContent' in who.result));
check('echo: newline and UTF-8 round trip', text(byId(4)) === 'hello\nworld \u00e9', byId(4));
check('add: 2 + 40', text(byId(5)) === '42', byId(5));
check('add: bad argument is -32602 before 2025-11-25', byId(6) && byId(6).error.code === -32602, byId(6));
const parse = flat.find(m => m.error && m.error.code === -32700);
check('malformed line: -32700 with id null', parse && parse.id === null, parse);
check('ping after the malformed line', byId(7) && JSON.stringify(byId(7).result) === '{}', byId(7));
const batches = msgs.filter(Array.isArray);
const batch = batches[0] || [];
check('batch: answered as one array, notification unanswered', batch.length === 3, batch);
check('batch: ping and echo answers', batch.some(m => m.id === 'b1' && m.result) &&
      batch.some(m => m.id === 'b2' && m.result.content[0].text === 'in a batch'), batch);
check('batch: non-object member is -32600 id null', batch.some(m => m.id === null && m.error.code === -32600), batch);
check('unknown method: -32601', byId(8) && byId(8).error.code === -32601, byId(8));
check('unknown tool: -32602', byId(9) && byId(9).error.code === -32602, byId(9));
const res = byId(10);
check('resources/list: whoami://identity', res && res.result.resources.length === 1 &&
      res.result.resources[0].uri === 'whoami://identity', res);
const rd = byId(11);
check('resources/read: identity JSON', rd && JSON.parse(rd.result.contents[0].text).env.email === 'alice@example.com', rd);
check('resources/read: unknown uri is -32002', byId(12) && byId(12).error.code === -32002, byId(12));
const pl = byId(13);
check('prompts/list: greet(name)', pl && pl.result.prompts[0].name === 'greet' &&
      pl.result.prompts[0].arguments[0].name === 'name' && pl.result.prompts[0].arguments[0].required === true, pl);
const pg = byId(14);
check('prompts/get: greet Bob', pg && pg.result.messages[0].content.text.includes('Bob'), pg);
check('prompts/get: missing argument is -32602', byId(15) && byId(15).error.code === -32602, byId(15));
check('logging/setLevel: ok', byId(16) && JSON.stringify(byId(16).result) === '{}', byId(16));
check('logging/setLevel: bad level is -32602', byId(17) && byId(17).error.code === -32602, byId(17));
check('manager_report: a report', (text(byId(18)) || '').includes('Quarterly report'), byId(18));
check('second initialize: -32600', byId(19) && byId(19).error.code === -32600, byId(19));
check('id null: -32600 with id null', flat.some(m => m.id === null && m.error && m.error.code === -32600 &&
      /id must be/.test(m.error.message)));
check('params not an object: -32602', byId(20) && byId(20).error.code === -32602, byId(20));
check('empty batch: -32600', flat.some(m => m.error && /empty batch/.test(m.error.message)));
const envNames = (text(byId(21)) || '').split('\n').join(',');
check('env_dump: exactly the variables given, sorted', envNames ===
      'ASAN_OPTIONS,MCP_CLIENT_ID,MCP_IDENTITY_JWT,MCP_SCOPES,MCP_USER_EMAIL,MCP_USER_GROUPS,MCP_USER_NAME,MCP_USER_ROLES,MCP_USER_SUB,PATH,UBSAN_OPTIONS', envNames);
const answered = new Set(flat.map(m => m.id));
check('every request answered once', [...Array(21).keys()].map(i => i + 1).every(i => answered.has(i)) &&
      flat.filter(m => m.id !== null).length === new Set(flat.filter(m => m.id !== null).map(m => m.id)).size);
const err = fs.readFileSync(dir + '/err.txt', 'utf8');
check('stderr: parse error logged, no sanitizer report', err.includes('parse error') && !/Sanitizer|runtime error/.test(err), err);
console.log(`part 1: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
EOF
node "$tmp/check1.js" "$tmp"
rc1=$?

# ---- part 2: timing, server->client requests, limits, signals ------------
node "$here/selftest.js" "$BIN"
rc2=$?

if [ "$rc1" != 0 ] || [ "$rc2" != 0 ]; then
    echo "selftest: FAILED"
    exit 1
fi
echo "selftest: all passed"
