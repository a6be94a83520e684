// bench/idle.mjs: the idle-stream scenario of `make bench` (bench/README.md, scenario 5).
//
//   node bench/idle.mjs upstream --port P            an HTTP MCP server: initialize answers
//                                                    with a session id, GET opens an event
//                                                    stream that stays silent
//   node bench/idle.mjs client --port P --path /mcp --pids 12,13 --n N --out FILE
//       opens N sessions (initialize through the front), then one idle GET stream on each,
//       then closes every stream, then DELETEs every session; writes JSON with the RSS and
//       fds of PIDS (the front's processes, summed) at base, after the initializes, with the
//       streams open, 10 s after they closed and 10 s after the DELETEs.
// Raw sockets on both sides, so the client's own cost does not depend on the front.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const args = Object.fromEntries(process.argv.slice(3).map((a, i, all) => (a.startsWith('--') ? [a.slice(2), all[i + 1]] : null)).filter(Boolean));
const mode = process.argv[2];

if (mode === 'upstream') {
  let n = 0;
  const srv = http.createServer((req, res) => {
    if (req.method === 'POST') {
      let b = '';
      req.on('data', (d) => (b += d));
      req.on('end', () => {
        let m;
        try { m = JSON.parse(b); } catch { res.writeHead(400).end(); return; }
        if (m.method === 'initialize') {
          res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': `s${++n}` });
          res.end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 'idle-upstream', version: '1' } } }));
        } else {
          res.writeHead(202).end();
        }
      });
    } else if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('idle upstream\n'); // the readiness probe
    } else if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.write(': open\n\n');
    } else {
      res.writeHead(200).end();
    }
  });
  srv.keepAliveTimeout = 0;
  srv.headersTimeout = 0;
  srv.requestTimeout = 0;
  srv.maxConnections = 100000;
  srv.listen(Number(args.port), '127.0.0.1');
} else if (mode === 'client') {
  const port = Number(args.port);
  const N = Number(args.n);
  const pids = args.pids.split(',').map(Number);
  const kib = (pid, key) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  const rss = () => pids.reduce((a, p) => a + kib(p, 'VmRSS'), 0);
  const fds = () => pids.reduce((a, p) => a + fs.readdirSync(`/proc/${p}/fd`).length, 0);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  /** Sends TEXT on a new connection; resolves with the socket once DONE(buffer so far) is true. */
  const exchange = (text, done) => new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    let buf = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error(`no answer within 20 s: ${buf.slice(0, 200)}`)); }, 20000);
    s.on('data', (d) => {
      buf += d;
      if (done(buf)) { clearTimeout(t); resolve({ s, buf }); }
    });
    s.on('error', (e) => { clearTimeout(t); reject(e); });
  });
  const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench-idle', version: '1' } } });
  const base = { rss: rss(), fds: fds() };
  const sids = [];
  for (let i = 0; i < N; i += 200) {
    sids.push(...await Promise.all(Array.from({ length: Math.min(200, N - i) }, async () => {
      const { s, buf } = await exchange(`POST ${args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n`
        + `Accept: application/json, text/event-stream\r\nContent-Length: ${init.length}\r\nConnection: close\r\n\r\n${init}`,
      (b) => /"result"/.test(b));
      s.destroy();
      const sid = /mcp-session-id: (\S+)/i.exec(buf);
      if (!sid) throw new Error(`initialize without a session id: ${buf.slice(0, 300)}`);
      return sid[1];
    })));
  }
  await sleep(1000);
  const initialized = { rss: rss(), fds: fds() };
  const streams = [];
  for (let i = 0; i < N; i += 200) {
    streams.push(...await Promise.all(sids.slice(i, i + 200).map(async (sid) => {
      const { s, buf } = await exchange(`GET ${args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n`
        + `Mcp-Session-Id: ${sid}\r\nMcp-Protocol-Version: 2025-11-25\r\n\r\n`, (b) => b.includes('\r\n\r\n'));
      if (!/^HTTP\/1\.1 200/.test(buf)) throw new Error(`GET stream refused: ${buf.slice(0, 300)}`);
      return s;
    })));
  }
  await sleep(2000);
  const loaded = { rss: rss(), fds: fds() };
  for (const s of streams) s.destroy();
  await sleep(10000);
  const closed = { rss: rss(), fds: fds() };
  // The client is done: DELETE ends each session, as the spec asks (a front keeps a session's
  // state until then, or until it idles out).
  let deletes = 0;
  for (let i = 0; i < N; i += 200) {
    await Promise.all(sids.slice(i, i + 200).map(async (sid) => {
      const { s, buf } = await exchange(`DELETE ${args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: ${sid}\r\n`
        + 'Mcp-Protocol-Version: 2025-11-25\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', (b) => b.includes('\r\n\r\n'));
      s.destroy();
      if (!/^HTTP\/1\.1 20[024]/.test(buf)) throw new Error(`DELETE refused: ${buf.slice(0, 300)}`);
      deletes++;
    }));
  }
  await sleep(10000);
  const deleted = { rss: rss(), fds: fds(), sessions: deletes };
  fs.writeFileSync(args.out, JSON.stringify({ n: N, base, initialized, loaded, closed, deleted, kib_per_stream: (loaded.rss - initialized.rss) / N }));
} else {
  console.error('usage: node bench/idle.mjs upstream|client ...');
  process.exit(2);
}
