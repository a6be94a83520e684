// Part 2 of selftest.sh: drives whoami-server over a live stdio pipe for
// what a scripted pipe cannot show: progress and ping during a slow call,
// cancellation, sampling and elicitation round trips, batches with slow
// members, 16 MiB lines, crashes, SIGTERM and EOF.
//   node selftest.js path/to/whoami-server
'use strict';
const { spawn } = require('child_process');

const BIN = process.argv[2];
const MiB = 1024 * 1024;
let passed = 0;
let failed = 0;

function check(name, ok, detail) {
    if (ok) {
        passed++;
        console.log('ok   ' + name);
    } else {
        failed++;
        const d = detail === undefined ? '' : ': ' + JSON.stringify(detail).slice(0, 400);
        console.log('FAIL ' + name + d);
    }
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

// One server process, with a message log and waiters.
class Peer {
    constructor(env) {
        this.child = spawn(BIN, [], {
            env: { PATH: process.env.PATH, ASAN_OPTIONS: 'detect_leaks=1:halt_on_error=1', ...env },
            stdio: ['pipe', 'pipe', 'pipe'],
        });
        this.msgs = [];
        this.badLines = [];
        this.waiters = [];
        this.stderr = '';
        this.nextId = 1;
        let parts = []; // chunks of the current line, so a 16 MiB line is not rescanned
        this.child.stdout.setEncoding('utf8');
        this.child.stdout.on('data', d => {
            let i;
            while ((i = d.indexOf('\n')) >= 0) {
                parts.push(d.slice(0, i));
                d = d.slice(i + 1);
                const line = parts.join('');
                parts = [];
                let m;
                try {
                    m = JSON.parse(line);
                } catch (e) {
                    this.badLines.push(line.slice(0, 200));
                    continue;
                }
                this.msgs.push(m);
                this.waiters = this.waiters.filter(w => !w(m));
            }
            if (d.length > 0) parts.push(d);
        });
        this.child.stderr.setEncoding('utf8');
        this.child.stderr.on('data', d => (this.stderr += d));
        this.child.stdin.on('error', () => {});
        this.exited = new Promise(r => this.child.on('exit', (code, signal) => r({ code, signal })));
    }
    send(m) {
        this.child.stdin.write((typeof m === 'string' ? m : JSON.stringify(m)) + '\n');
    }
    // The first message, past or future, matching PRED; null after MS.
    waitFor(pred, ms = 3000) {
        const seen = this.msgs.find(pred);
        if (seen) return Promise.resolve(seen);
        return new Promise(resolve => {
            const t = setTimeout(() => {
                this.waiters = this.waiters.filter(w => w !== waiter);
                resolve(null);
            }, ms);
            const waiter = m => {
                if (!pred(m)) return false;
                clearTimeout(t);
                resolve(m);
                return true;
            };
            this.waiters.push(waiter);
        });
    }
    request(method, params, id = 'r' + this.nextId++, ms) {
        this.send({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
        return this.waitFor(m => m.id === id && !m.method, ms);
    }
    call(name, args, meta, id) {
        return this.request('tools/call', { name, arguments: args || {}, ...(meta ? { _meta: meta } : {}) }, id);
    }
    async init(version, capabilities = {}) {
        const r = await this.request('initialize', {
            protocolVersion: version,
            capabilities,
            clientInfo: { name: 'selftest', version: '1' },
        });
        this.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
        return r;
    }
    async close() {
        this.child.stdin.end();
        return this.exited;
    }
}

const text = r => r && r.result && r.result.content && r.result.content[0].text;

async function testProgressAndPing() {
    const p = new Peer();
    await p.init('2025-11-25');
    const t0 = Date.now();
    const slow = p.call('slow', { seconds: 0.4, steps: 4 }, { progressToken: 'tok' }, 'slow1');
    const ping = await p.request('ping', undefined, 'ping-during-slow');
    const pingAt = Date.now() - t0;
    const done = await slow;
    const doneAt = Date.now() - t0;
    check('ping answered while slow runs', ping && pingAt < 300 && doneAt > pingAt, { pingAt, doneAt });
    const prog = p.msgs.filter(m => m.method === 'notifications/progress');
    check('slow: 4 progress notifications, increasing, with total and message',
        prog.length === 4 && prog.every((m, i) => m.params.progressToken === 'tok' &&
            m.params.progress === i + 1 && m.params.total === 4 && m.params.message === `step ${i + 1} of 4`), prog);
    check('slow: answered after its last progress, at about 0.4 s',
        done && p.msgs.indexOf(done) > p.msgs.indexOf(prog[3]) && doneAt >= 380 && doneAt < 1500, { doneAt, done });
    const bad = await p.call('slow', { seconds: 31 });
    check('slow: seconds over 30 is an isError result (2025-11-25)', bad && bad.result && bad.result.isError === true, bad);
    check('exit 0 at EOF', (await p.close()).code === 0);
}

async function testCancel() {
    const p = new Peer();
    await p.init('2025-11-25');
    p.call('slow', { seconds: 0.3, steps: 3 }, { progressToken: 7 }, 'c1');
    await sleep(120);
    p.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'c1', reason: 'test' } });
    const after = p.msgs.length;
    const ans = await p.waitFor(m => m.id === 'c1', 600);
    const later = p.msgs.slice(after).filter(m => m.method === 'notifications/progress');
    check('cancelled slow: no answer, no more progress', ans === null && later.length === 0, { ans, later });
    const ping = await p.request('ping');
    check('cancelled slow: server still serves', ping && ping.result);
    p.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'unknown' } });
    check('cancel of an unknown id: ignored', (await p.request('ping')).result !== undefined);
    await p.close();
}

async function testSampling() {
    const p = new Peer();
    const init = await p.init('2025-11-25', { sampling: {}, elicitation: { form: {} } });
    check('initialize: 2025-11-25 negotiated', init.result.protocolVersion === '2025-11-25', init);
    const pending = p.call('sample', { prompt: 'Say hi' }, undefined, 's1');
    const req = await p.waitFor(m => m.method === 'sampling/createMessage');
    check('sample: server sends sampling/createMessage with a string id',
        req && /^srv-\d+$/.test(req.id) && req.params.messages[0].content.text === 'Say hi' &&
        req.params.maxTokens > 0, req);
    p.send({ jsonrpc: '2.0', id: req.id, result: { role: 'assistant', model: 'm', content: { type: 'text', text: 'hi from the model' } } });
    const r = await pending;
    check('sample: tool answers with the client\'s text', text(r) === 'hi from the model', r);

    const pending2 = p.call('sample', { prompt: 'again' }, undefined, 's2');
    const req2 = await p.waitFor(m => m.method === 'sampling/createMessage' && m.id !== req.id);
    p.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 's2' } });
    const cn = await p.waitFor(m => m.method === 'notifications/cancelled');
    check('sample cancelled: server cancels its own request', cn && req2 && cn.params.requestId === req2.id, cn);
    p.send({ jsonrpc: '2.0', id: req2 && req2.id, result: { role: 'assistant', model: 'm', content: { type: 'text', text: 'late' } } });
    check('sample cancelled: no answer, a late response is ignored', (await Promise.race([pending2, sleep(300)])) == null);

    const pe = p.call('elicit', { message: 'Your favourite number?' }, undefined, 'e1');
    const er = await p.waitFor(m => m.method === 'elicitation/create');
    check('elicit: form request with one string field "answer"',
        er && er.params.mode === 'form' && er.params.requestedSchema.properties.answer.type === 'string' &&
        er.params.message === 'Your favourite number?', er);
    p.send({ jsonrpc: '2.0', id: er.id, result: { action: 'accept', content: { answer: '42' } } });
    check('elicit: accept returns the answer', text(await pe) === '42');
    const pd = p.call('elicit', { message: 'Again?' }, undefined, 'e2');
    const er2 = await p.waitFor(m => m.method === 'elicitation/create' && m.id !== er.id);
    p.send({ jsonrpc: '2.0', id: er2.id, result: { action: 'decline' } });
    check('elicit: decline returns the action', text(await pd) === 'decline');
    const pr = p.call('sample', { prompt: 'err' }, undefined, 's3');
    const er3 = await p.waitFor(m => m.method === 'sampling/createMessage' && m.id !== req.id && m.id !== req2.id);
    p.send({ jsonrpc: '2.0', id: er3.id, error: { code: -1, message: 'user rejected' } });
    const r3 = await pr;
    check('sample: client error becomes an isError result', r3 && r3.result.isError === true &&
        /user rejected/.test(text(r3)), r3);

    const who = await p.call('whoami', {});
    check('whoami: structuredContent {env, meta: null} on 2025-11-25',
        who && who.result.structuredContent && who.result.structuredContent.meta === null &&
        who.result.structuredContent.env.sub === null, who);
    const bad = await p.call('echo', { text: 5 });
    check('bad tool arguments on 2025-11-25: isError result', bad && bad.result && bad.result.isError === true, bad);
    p.send('[{"jsonrpc":"2.0","id":"x","method":"ping"}]');
    const br = await p.waitFor(m => m.id === null && m.error);
    check('batch on 2025-11-25: one -32600 error', br && br.error.code === -32600, br);
    await p.close();
}

async function testNoCapabilities() {
    const p = new Peer();
    const init = await p.init('1999-01-01');
    check('unknown version: answered with 2025-11-25', init.result.protocolVersion === '2025-11-25', init);
    const s = await p.call('sample', { prompt: 'x' });
    check('sample without the capability: isError', s && s.result.isError === true && /sampling/.test(text(s)), s);
    const e = await p.call('elicit', { message: 'x' });
    check('elicit without the capability: isError', e && e.result.isError === true, e);
    await p.close();
}

async function testBeforeInit() {
    const p = new Peer();
    const r = await p.request('tools/list');
    check('tools/list before initialize: -32600', r && r.error && r.error.code === -32600, r);
    const ping = await p.request('ping');
    check('ping before initialize: answered', ping && ping.result);
    await p.close();
}

async function testBatchWithSlow() {
    const p = new Peer();
    await p.init('2025-03-26');
    p.send(JSON.stringify([
        { jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'slow', arguments: { seconds: 0.2, steps: 1 } } },
        { jsonrpc: '2.0', id: 'b', method: 'ping' },
    ]));
    const arr = await p.waitFor(m => Array.isArray(m) && m.some(x => x.id === 'b'));
    check('batch with a slow member: one array once both are done',
        arr && arr.length === 2 && arr.some(x => x.id === 'a' && x.result), arr);
    p.send(JSON.stringify([
        { jsonrpc: '2.0', id: 'c', method: 'tools/call', params: { name: 'slow', arguments: { seconds: 5 } } },
        { jsonrpc: '2.0', id: 'd', method: 'ping' },
        { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'c' } },
    ]));
    const arr2 = await p.waitFor(m => Array.isArray(m) && m.some(x => x.id === 'd'), 1000);
    check('batch with a cancelled member: answered without it', arr2 && arr2.length === 1, arr2);
    await p.close();
}

async function testLongLines() {
    const p = new Peer();
    await p.init('2025-11-25');
    const big = await p.request('tools/call', { name: 'big_line', arguments: { bytes: 16 * MiB } }, 'big', 20000);
    check('big_line: one 16 MiB text in one line', text(big) && text(big).length === 16 * MiB && /^x+$/.test(text(big)));
    const long = 'y'.repeat(16 * MiB - 200);
    const echo = await p.request('tools/call', { name: 'echo', arguments: { text: long } }, 'long', 20000);
    check('a line just under 16 MiB is accepted', text(echo) === long);
    p.send('{"jsonrpc":"2.0","id":"too-long","method":"tools/call","params":{"name":"echo","arguments":{"text":"' +
        'z'.repeat(16 * MiB) + '"}}}');
    const err = await p.waitFor(m => m.id === null && m.error && m.error.code === -32700, 20000);
    check('a line over 16 MiB: -32700, id null', err !== null, err);
    const ping = await p.request('ping');
    check('after the over-long line: still serving', ping && ping.result && !p.msgs.some(m => m.id === 'too-long'));
    check('no unparsable stdout lines', p.badLines.length === 0, p.badLines);
    await p.close();
}

async function testStderrAndCrash() {
    const p = new Peer();
    await p.init('2025-11-25');
    const r = await p.call('stderr', { text: 'line one\nstill one' });
    await sleep(50);
    check('stderr tool: one line on stderr, ok answer', text(r).startsWith('ok') &&
        p.stderr.split('\n').includes('line one still one'), p.stderr);
    p.call('crash', { code: 3 });
    const ex = await p.exited;
    check('crash {code: 3}: exit status 3', ex.code === 3, ex);

    const q = new Peer();
    await q.init('2025-11-25');
    q.call('crash', { signal: 'SEGV' });
    const ex2 = await q.exited;
    check('crash {signal: SEGV}: killed by SIGSEGV', ex2.signal === 'SIGSEGV', ex2);
}

async function testSigtermAndEof() {
    const p = new Peer();
    await p.init('2025-11-25');
    p.call('slow', { seconds: 10 }, undefined, 'long-slow');
    await sleep(100);
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    const ex = await p.exited;
    check('SIGTERM during a slow call: exit 0 at once', ex.code === 0 && Date.now() - t0 < 1000, { ex, ms: Date.now() - t0 });

    const q = new Peer();
    await q.init('2025-11-25');
    q.call('slow', { seconds: 10 }, undefined, 'abandoned');
    q.send({ jsonrpc: '2.0', id: 'last-ping', method: 'ping' });
    const t1 = Date.now();
    const ex2 = await q.close();
    check('EOF: exit 0 promptly, earlier answers written, slow abandoned',
        ex2.code === 0 && Date.now() - t1 < 1000 && q.msgs.some(m => m.id === 'last-ping') &&
        !q.msgs.some(m => m.id === 'abandoned'), { ex2, msgs: q.msgs.length });
    check('no sanitizer reports', ![p, q].some(x => /Sanitizer|runtime error/.test(x.stderr)), p.stderr + q.stderr);
}

(async () => {
    const tests = [testProgressAndPing, testCancel, testSampling, testNoCapabilities, testBeforeInit,
        testBatchWithSlow, testLongLines, testStderrAndCrash, testSigtermAndEof];
    for (const t of tests) {
        try {
            await t();
        } catch (e) {
            check(t.name + ' threw', false, String(e && e.stack));
        }
    }
    console.log(`part 2: ${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
})();
