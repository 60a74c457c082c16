#!/usr/bin/env node
// Usage: node scripts/with-redis.mjs <cmd> [args...]
// Runs <cmd> with REDIS_URL set: the caller's own, else a private redis-server on a free loopback
// port (stopped afterwards), else the docker compose `redis` service (left running).
// Also exports REDIS_SERVER_BIN when redis-server is found, for test helpers that start their own.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { constants as osConstants, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

const HOST = '127.0.0.1';
const NOT_FOUND =
  'redis-server was not found. Install it (Debian/Ubuntu: sudo apt-get install redis-server; ' +
  'macOS: brew install redis) or set REDIS_URL=redis://host:port';

const [cmd, ...args] = process.argv.slice(2);
if (!cmd) {
  console.error('usage: node scripts/with-redis.mjs <cmd> [args...]');
  process.exit(2);
}

let server; // { child, dir, exited } while our private redis-server runs
let child; // the command
let received; // a signal we got, to forward and to re-raise at the end
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    received = signal;
    child?.kill(signal);
  });
}
process.on('exit', () => {
  // Last resort, synchronous: normally stopServer() has already run.
  server?.child.kill('SIGKILL');
  if (server) rmSync(server.dir, { recursive: true, force: true });
});

const env = { ...process.env };
const bin = process.env.REDIS_SERVER_BIN ?? findOnPath('redis-server');
if (bin) env.REDIS_SERVER_BIN = bin;

if (!env.REDIS_URL) {
  if (bin) {
    env.REDIS_URL = `redis://${HOST}:${await startServer(bin)}`;
  } else if (succeeds('docker', ['compose', 'version']) && succeeds('docker', ['info'])) {
    env.REDIS_URL = await startCompose();
  } else {
    console.error(NOT_FOUND);
    process.exit(1);
  }
}

let exitCode = 1;
let exitSignal;
if (!received) {
  child = spawn(cmd, args, { stdio: 'inherit', env });
  [exitCode, exitSignal] = await new Promise((resolve) => {
    child.once('error', (error) => {
      console.error(`with-redis: could not run ${cmd}: ${error.message}`);
      resolve([127, undefined]);
    });
    child.once('exit', (code, signal) => resolve([code ?? 1, signal ?? undefined]));
  });
}
await stopServer();

const signal = exitSignal ?? received;
if (signal) {
  // Die of the same signal, so whoever ran us sees what happened.
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
  await delay(1000);
  process.exit(128 + (osConstants.signals[signal] ?? 0));
}
process.exit(exitCode);

function findOnPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

function succeeds(command, commandArgs) {
  return spawnSync(command, commandArgs, { stdio: 'ignore', timeout: 30_000 }).status === 0;
}

async function startServer(redisBin) {
  for (let attempt = 1; attempt <= 5 && !received; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'with-redis-'));
    const redis = spawn(
      redisBin,
      ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir],
      { stdio: 'ignore' },
    );
    let dead = false;
    const exited = new Promise((resolve) => {
      redis.once('exit', resolve);
      redis.once('error', resolve);
    }).then(() => (dead = true));
    server = { child: redis, dir, exited };
    if (await waitForPing(port, 5_000, () => dead || received)) return port;
    await stopServer();
  }
  if (received) return 0; // the command will not run; we exit below
  console.error(`with-redis: ${redisBin} did not answer PING on ${HOST}; run it by hand to see why.`);
  process.exit(1);
}

async function stopServer() {
  if (!server) return;
  const { child: redis, dir, exited } = server;
  redis.kill('SIGTERM');
  const timer = setTimeout(() => redis.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
  rmSync(dir, { recursive: true, force: true });
  server = undefined;
}

async function startCompose() {
  console.error('with-redis: redis-server not found; using `docker compose up -d redis` (left running).');
  if (spawnSync('docker', ['compose', 'up', '-d', 'redis'], { stdio: 'inherit' }).status !== 0) {
    console.error(`with-redis: docker compose could not start redis. ${NOT_FOUND}`);
    process.exit(1);
  }
  if (!(await waitForPing(6379, 15_000, () => received))) {
    console.error(`with-redis: the compose redis did not answer PING on ${HOST}:6379.`);
    process.exit(1);
  }
  return `redis://${HOST}:6379`;
}

async function freePort() {
  const probe = createServer();
  await new Promise((resolve, reject) => probe.once('error', reject).listen(0, HOST, resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function waitForPing(port, timeoutMs, gaveUp) {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; attempt < timeoutMs / 50 && Date.now() < deadline && !gaveUp(); attempt++) {
    if (await ping(port)) return true;
    await delay(50);
  }
  return false;
}

function ping(port) {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (chunk) => done(chunk.toString('latin1').startsWith('+PONG')));
  });
}
