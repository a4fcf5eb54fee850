// Starting tallyd for the Node test drivers (tests/live, tests/e2e): a free
// port, tallyd on a private embedded PostgreSQL under dataDir with its log
// in logPath, and the cluster's stop when a test ends badly.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** A free TCP port on 127.0.0.1. */
export async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

/** Starts tallyd; srv.exit is its exit code once it has ended, else null. */
export async function startTallyd(bin, dataDir, logPath) {
  const port = await freePort();
  const logFd = fs.openSync(logPath, 'a');
  const proc = spawn(bin, ['--listen', `127.0.0.1:${port}`, '--data-dir', dataDir],
    { stdio: ['ignore', logFd, logFd] });
  const srv = { proc, port, base: `http://127.0.0.1:${port}`, exit: null };
  proc.on('exit', (code) => { srv.exit = code; });
  return srv;
}

/** Stops the embedded cluster of dataDir at once, if it still runs (tallyd killed). */
export function pgStop(dataDir) {
  const bins = fs.readdirSync('/usr/lib/postgresql').sort().map((v) => `/usr/lib/postgresql/${v}/bin`);
  const pgdir = path.join(dataDir, 'pg');
  if (!bins.length || !fs.existsSync(path.join(pgdir, 'postmaster.pid'))) return;
  const cmd = [path.join(bins.at(-1), 'pg_ctl'), '-D', pgdir, '-m', 'immediate', '-w', 'stop'];
  try {
    if (process.getuid() === 0) execFileSync('runuser', ['-u', 'postgres', '--', ...cmd], { stdio: 'ignore' });
    else execFileSync(cmd[0], cmd.slice(1), { stdio: 'ignore' });
  } catch { /* already stopped */ }
}
