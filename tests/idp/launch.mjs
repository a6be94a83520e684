// Start tests/idp/server.mjs as a child process and wait for its "idp ready <issuer>" line.
//
//   import { startIdpProcess } from '../idp/launch.mjs';
//   const idp = await startIdpProcess({ args: ['--test-knobs', '--redirect-uri', cb] });
//   ... idp.issuer, idp.base (http://127.0.0.1:P/t/demo), idp.origin, idp.port ...
//   await idp.stop();

import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'server.mjs');

/**
 * @param {object} [o]
 * @param {string[]} [o.args]    extra server flags (default port: --port 0, a free one)
 * @param {object} [o.env]       extra environment
 * @param {number} [o.timeoutMs] how long to wait for the ready line (default 30000, and one more try)
 * @param {boolean} [o.inheritStderr] pass the server's stderr through (default: collect it)
 */
export async function startIdpProcess(o = {}) {
  // A node process that prints nothing at all for half a minute (seen once in many CI runs,
  // stderr empty) is replaced once; a real failure (an exit, an error) is not retried.
  try {
    return await startOnce({ ...o, timeoutMs: o.timeoutMs ?? 30000 });
  } catch (err) {
    if (!err.notReady) throw err;
    process.stderr.write(`launch: ${err.message.split('\n')[0]}; starting the IdP again\n`);
    return startOnce({ ...o, timeoutMs: o.timeoutMs ?? 30000 });
  }
}

async function startOnce({
  args = [], env = {}, timeoutMs = 30000, inheritStderr = false,
} = {}) {
  const argv = [SERVER, ...(args.includes('--port') ? [] : ['--port', '0']), '--exit-on-stdin-close', ...args];
  // stdin is a pipe that only this process holds: if it dies, even by SIGKILL, the IdP exits
  const proc = spawn(process.execPath, argv, {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', inheritStderr ? 'inherit' : 'pipe'],
  });
  let stderr = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (d) => {
    stderr = (stderr + d).slice(-20000);
  });
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  });

  async function stop(graceMs = 5000) {
    if (proc.exitCode !== null || proc.signalCode !== null) return exited;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    const r = await exited;
    clearTimeout(t);
    return r;
  }

  let issuer;
  try {
    issuer = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        const e = new Error(`idp not ready after ${timeoutMs} ms; stdout: ${JSON.stringify(out.slice(-500))}; stderr:\n${stderr}`);
        e.notReady = true;
        reject(e);
      }, timeoutMs);
      proc.stdout.setEncoding('utf8');
      proc.stdout.on('data', (d) => {
        out += d;
        const m = /^idp ready (\S+)$/m.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`idp exited (code ${code}, signal ${signal}) before it was ready; stderr:\n${stderr}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  proc.stdout.resume(); // keep draining

  const u = new URL(issuer);
  return {
    issuer,
    origin: u.origin,
    port: Number(u.port),
    base: issuer.replace(/\/oauth2\/token$/, ''),
    proc,
    stop,
    get stderr() { return stderr; },
  };
}
