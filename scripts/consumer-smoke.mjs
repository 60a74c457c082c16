#!/usr/bin/env node
// Usage: node scripts/consumer-smoke.mjs          (after `npm run build`; `npm run smoke:consumer`)
// Installs the packed tarball of libs/lock the way a user would, into throwaway projects outside the
// monorepo, and runs a small Nest app in each against a private redis-server on a free loopback port:
//   cjs-nest11   CommonJS (`require`), @nestjs/* 11, ioredis 5, @nestjs/bullmq 11; run twice: as Node
//                runs it by default (require(esm) on, so the "module-sync" condition picks dist/esm) and
//                with --no-experimental-require-module (what Node < 20.19 and CommonJS-only tools see:
//                the "require" condition, dist/cjs)
//   esm-nest12   ES modules (`import`), @nestjs/* 12, ioredis 6, @nestjs/bullmq 12 (dist/esm)
// Each app boots an application context with LockModule.forRoot({ redis }), runs a @WithLock method twice
// concurrently (they must not overlap; the same method without the lock must), runs one BullMQ job
// through a @Processor whose process() is @WithLock, closes the app and must then exit on its own within
// 15 s. Each app also loads the four subpath exports (prometheus, otel, terminus, event-emitter): esm-nest12
// installs their optional peers and each must load; cjs-nest11 installs none, so the main entry must run without
// them and each subpath must fail with MODULE_NOT_FOUND. The tarball is also checked with publint and
// @arethetypeswrong/cli. Needs the npm registry and redis-server (REDIS_SERVER_BIN or PATH). Everything lives in one temp folder, removed at the end; the
// redis-server is stopped by its pid. Exits non-zero on any failure.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, accessSync, constants } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const TOTAL_BUDGET_MS = 240_000; // CI target is < 3 min; this is the hard stop
const INSTALL_TIMEOUT_MS = 180_000;
const RUN_TIMEOUT_MS = 60_000;
const EXIT_AFTER_CLOSE_MS = 15_000;
const PUBLINT = 'publint@0.3.25';
const ATTW = '@arethetypeswrong/cli@0.18.5';

/** The optional peers of the subpath exports, as the esm-nest12 consumer installs them. */
const OPTIONAL_PEERS = ['prom-client', '@opentelemetry/api', '@nestjs/terminus@12', '@nestjs/event-emitter@12'];
/** Each subpath export and the class it must export. */
const SUBPATHS = {
  prometheus: 'LockPrometheusModule',
  otel: 'LockTracingModule',
  terminus: 'LockHealthIndicator',
  'event-emitter': 'LockEventEmitterModule',
};

const CONSUMERS = [
  {
    name: 'cjs-nest11',
    type: 'commonjs',
    deps: ['@nestjs/common@11', '@nestjs/core@11', '@nestjs/bullmq@11', 'bullmq', 'ioredis@5', 'reflect-metadata', 'rxjs'],
    expect: { '@nestjs/core': 11, ioredis: 5 },
    // None of the optional peers installed: the main entry must not need them, and every subpath
    // export that does fails to load.
    subpaths: 'absent',
    runs: [
      { label: 'require(esm) on', nodeArgs: [], build: 'dist/esm', sameCopy: true },
      { label: 'require(esm) off', nodeArgs: ['--no-experimental-require-module'], build: 'dist/cjs', sameCopy: false },
    ],
  },
  {
    name: 'esm-nest12',
    type: 'module',
    deps: [
      '@nestjs/common@12',
      '@nestjs/core@12',
      '@nestjs/bullmq@12',
      'bullmq',
      'ioredis@6',
      'reflect-metadata',
      'rxjs',
      ...OPTIONAL_PEERS,
    ],
    expect: { '@nestjs/core': 12, ioredis: 6 },
    // Every optional peer installed: each subpath export loads and exports its module.
    subpaths: 'present',
    runs: [{ label: 'import', nodeArgs: [], build: 'dist/esm' }],
  },
];

const started = Date.now();
const children = new Set();
const work = mkdtempSync(join(tmpdir(), 'nrl-consumer-'));
let redis; // the redis-server child
let failed = false;
const results = [];

function cleanup() {
  for (const child of children) child.kill('SIGKILL');
  redis?.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.error(`consumer-smoke: ${signal}, stopping`);
    process.exit(1);
  });
}
const budget = setTimeout(() => {
  console.error(`consumer-smoke: over the ${TOTAL_BUDGET_MS / 1000} s budget, stopping`);
  process.exit(1);
}, TOTAL_BUDGET_MS);
budget.unref();

/** Runs a command; resolves { code, out, ms }; kills it after `timeout` ms (code null). */
function run(cmd, args, { cwd, timeout, env, onLine } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeout ?? 60_000);
    const take = (chunk) => {
      const text = chunk.toString();
      out += text;
      if (onLine) for (const line of text.split('\n')) if (line) onLine(line, child);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', (error) => {
      out += `\n${error.message}`;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code: timedOut ? null : code, signal, out, ms: Date.now() - t0, timedOut });
    });
  });
}

function findRedisServer() {
  if (process.env.REDIS_SERVER_BIN) return process.env.REDIS_SERVER_BIN;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, 'redis-server'), constants.X_OK);
      return join(dir, 'redis-server');
    } catch {
      // not in this PATH entry: try the next one
    }
  }
  throw new Error('redis-server was not found (install it, or set REDIS_SERVER_BIN)');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function ping(port) {
  return new Promise((resolve) => {
    const socket = connect(port, HOST);
    socket.setTimeout(500);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function startRedis() {
  const bin = findRedisServer();
  const dir = join(work, 'redis');
  mkdirSync(dir);
  const port = await freePort();
  redis = spawn(bin, ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (redis.exitCode !== null) throw new Error(`redis-server exited with code ${redis.exitCode}`);
    if (await ping(port)) return port;
    await delay(100);
  }
  throw new Error(`redis-server did not answer on ${HOST}:${port} within 10 s`);
}

async function stopRedis() {
  if (!redis || redis.exitCode !== null) return;
  const exited = new Promise((resolve) => redis.once('exit', resolve));
  redis.kill('SIGTERM');
  const timer = setTimeout(() => redis.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
  redis = undefined;
}

function check(ok, label, detail = '') {
  console.log(`${ok ? '  ok  ' : '  FAIL'} ${label}${detail ? `: ${detail}` : ''}`);
  if (!ok) failed = true;
  return ok;
}

/** The app, written once; `header` supplies the imports (require or import). */
function appSource(header) {
  return `${header}
// Plain JavaScript: decorators are applied with Reflect.decorate, as TypeScript's output does.
const url = process.env.REDIS_URL;
const name = process.env.CONSUMER;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const report = (result) => console.log('RESULT ' + JSON.stringify(result));

function decorateMethod(decorators, target, key) {
  const descriptor = Reflect.decorate(decorators, target, key, Object.getOwnPropertyDescriptor(target, key));
  Object.defineProperty(target, key, descriptor);
}

let active = 0;
let maxActive = 0;
class Counter {
  async locked(id) { return this.unlocked(id); }
  async unlocked(id) {
    active++;
    maxActive = Math.max(maxActive, active);
    await sleep(300);
    active--;
    return { id, key: currentLock() ? currentLock().keys[0] : null };
  }
}
decorateMethod([WithLock('counter', 5000, 5000)], Counter.prototype, 'locked');
const CounterProvider = Reflect.decorate([Injectable()], Counter);

const processed = [];
class Jobs extends WorkerHost {
  async process(job, token) {
    const lock = currentLock();
    processed.push({ id: job.data.id, key: lock ? lock.keys[0] : null, held: lock ? lock.isHeld : false, token: typeof token });
    return 'done';
  }
}
decorateMethod([WithLock((job) => 'job:' + job.data.id, 5000, 5000)], Jobs.prototype, 'process');
const JobsProvider = Reflect.decorate([Processor(name)], Jobs);

class AppModule {}
const redisUrl = new URL(url);
const AppModuleClass = Reflect.decorate(
  [
    Module({
      imports: [
        LockModule.forRoot({ redis: url, keyPrefix: name + ':lock:' }),
        BullModule.forRoot({ connection: { host: redisUrl.hostname, port: Number(redisUrl.port) }, prefix: name + ':bull' }),
        BullModule.registerQueue({ name }),
      ],
      providers: [CounterProvider, JobsProvider],
    }),
  ],
  AppModule,
);

async function main() {
  const app = await NestFactory.createApplicationContext(AppModuleClass, { logger: ['error', 'warn'] });
  const result = { versions: {} };
  for (const pkg of ['@nestjs/core', 'ioredis', 'bullmq', '@nestjs/bullmq']) result.versions[pkg] = version(pkg);
  result.resolved = resolved();
  // The dual-package hazard: does import() give the same copy of the package as the main entry?
  result.sameCopyForImport = (await import('nestjs-redis-lock')).LockService === LockService;
  // The subpath exports (optional peers): the name of each one's main class, or the error code.
  result.subpaths = {};
  for (const [sub, name] of Object.entries(${JSON.stringify(SUBPATHS)})) {
    try {
      const loaded = await loadSubpath('nestjs-redis-lock/' + sub);
      result.subpaths[sub] = typeof loaded[name] === 'function' ? loaded[name].name : 'missing ' + name;
    } catch (error) {
      result.subpaths[sub] = error.code || error.message;
    }
  }
  try {
    const counter = app.get(CounterProvider);
    if (!(app.get(LockService) instanceof LockService)) throw new Error('LockService is not in the container');

    maxActive = 0;
    const locked = await Promise.all([counter.locked(1), counter.locked(2)]);
    result.lockedMaxActive = maxActive;
    result.lockedKeys = locked.map((r) => r.key);

    maxActive = 0;
    await Promise.all([counter.unlocked(1), counter.unlocked(2)]);
    result.unlockedMaxActive = maxActive;

    const queue = app.get(getQueueToken(name));
    const job = await queue.add('smoke', { id: 42 });
    const deadline = Date.now() + 10000;
    let state = await job.getState();
    while (state !== 'completed' && state !== 'failed' && Date.now() < deadline) {
      await sleep(50);
      state = await job.getState();
    }
    result.jobState = state;
    result.jobFailedReason = state === 'failed' ? (await queue.getJob(job.id)).failedReason : undefined;
    result.processed = processed;
  } finally {
    await app.close();
  }
  report(result);
  console.log('CLOSED');
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  process.exitCode = 1;
});
`;
}

const CJS_HEADER = `'use strict';
require('reflect-metadata');
const { Injectable, Module } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { BullModule, Processor, WorkerHost, getQueueToken } = require('@nestjs/bullmq');
const { LockModule, LockService, WithLock, currentLock } = require('nestjs-redis-lock');
const version = (pkg) => require(pkg + '/package.json').version;
const resolved = () => require.resolve('nestjs-redis-lock');
const loadSubpath = async (specifier) => require(specifier);`;

const ESM_HEADER = `import 'reflect-metadata';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BullModule, Processor, WorkerHost, getQueueToken } from '@nestjs/bullmq';
import { LockModule, LockService, WithLock, currentLock } from 'nestjs-redis-lock';
const require = createRequire(import.meta.url);
const version = (pkg) => require(pkg + '/package.json').version;
const resolved = () => fileURLToPath(import.meta.resolve('nestjs-redis-lock'));
const loadSubpath = (specifier) => import(specifier);`;

async function pack() {
  const packs = join(work, 'pack');
  mkdirSync(packs);
  // `./libs/lock`: npm 11 reads `libs/lock` as a GitHub shorthand.
  const { code, out } = await run('npm', ['pack', './libs/lock', '--pack-destination', packs, '--json', '--silent'], {
    cwd: repo,
    timeout: 120_000,
  });
  if (code !== 0) throw new Error(`npm pack failed:\n${out}`);
  const [info] = JSON.parse(out.slice(out.indexOf('[')));
  return { tarball: join(packs, info.filename), files: info.files.map((f) => f.path), size: info.size };
}

async function install(consumer, tarball) {
  const dir = join(work, consumer.name);
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify({ name: `smoke-${consumer.name}`, private: true, type: consumer.type }, null, 2)}\n`,
  );
  writeFileSync(join(dir, 'main.js'), appSource(consumer.type === 'module' ? ESM_HEADER : CJS_HEADER));
  const result = await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', tarball, ...consumer.deps], {
    cwd: dir,
    timeout: INSTALL_TIMEOUT_MS,
  });
  return { dir, ...result };
}

async function runApp(consumer, dir, mode, port) {
  const { label, nodeArgs, build } = mode;
  let closedAt;
  let afterClose;
  const { code, out, ms, timedOut } = await run(process.execPath, [...nodeArgs, 'main.js'], {
    cwd: dir,
    timeout: RUN_TIMEOUT_MS,
    env: { REDIS_URL: `redis://${HOST}:${port}`, CONSUMER: `${consumer.name}-${nodeArgs.length ? 'b' : 'a'}`, NODE_OPTIONS: '' },
    onLine: (line, child) => {
      if (line === 'CLOSED') {
        closedAt = Date.now();
        afterClose = setTimeout(() => child.kill('SIGKILL'), EXIT_AFTER_CLOSE_MS);
      }
    },
  });
  clearTimeout(afterClose);
  const exitMs = closedAt ? Date.now() - closedAt : undefined;
  const title = `${consumer.name} (${label})`;
  console.log(`${title}: ${(ms / 1000).toFixed(1)} s`);
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  const r = line ? JSON.parse(line.slice(7)) : undefined;
  if (!check(!!r && code === 0 && !timedOut, 'booted, ran and closed', r ? '' : `exit ${code}${timedOut ? ' (killed)' : ''}\n${out}`)) {
    results.push({ title, ok: false, ms });
    return;
  }
  const other = out
    .split('\n')
    .filter((l) => l && !l.startsWith('RESULT ') && l !== 'CLOSED')
    .join('\n');
  const versions = Object.entries(r.versions)
    .map(([k, v]) => `${k}@${v}`)
    .join(' ');
  const majorsOk = Object.entries(consumer.expect).every(([pkg, major]) => Number(r.versions[pkg].split('.')[0]) === major);
  check(majorsOk, 'versions', versions);
  check(r.resolved.includes(`/nestjs-redis-lock/${build}/`), `loaded ${build}`, r.resolved.slice(r.resolved.indexOf('nestjs-redis-lock')));
  if (mode.sameCopy !== undefined) {
    check(
      r.sameCopyForImport === mode.sameCopy,
      `require() and import() ${mode.sameCopy ? 'share one copy' : 'load two copies (expected without require(esm))'}`,
    );
  }
  const subpaths = Object.entries(r.subpaths ?? {})
    .map(([sub, got]) => `${sub}: ${got}`)
    .join(', ');
  check(
    Object.entries(SUBPATHS).every(([sub, name]) =>
      consumer.subpaths === 'present' ? r.subpaths?.[sub] === name : /MODULE_NOT_FOUND/.test(r.subpaths?.[sub] ?? ''),
    ),
    consumer.subpaths === 'present'
      ? 'every subpath export loads with its optional peer'
      : 'the main entry runs without the optional peers; the subpath exports fail to load',
    subpaths,
  );
  check(r.lockedMaxActive === 1, '@WithLock calls did not overlap', `max concurrent ${r.lockedMaxActive}, keys ${r.lockedKeys.join(',')}`);
  check(r.unlockedMaxActive === 2, 'the same calls without the lock do overlap', `max concurrent ${r.unlockedMaxActive}`);
  const job = r.processed[0];
  check(
    r.jobState === 'completed' && r.processed.length === 1 && job.key === 'job:42' && job.held && job.token === 'string',
    'BullMQ job ran through the locked process()',
    `state ${r.jobState}${r.jobFailedReason ? ` (${r.jobFailedReason})` : ''}, ${JSON.stringify(r.processed)}`,
  );
  check(exitMs !== undefined && exitMs < EXIT_AFTER_CLOSE_MS && code === 0, 'exited on its own after app.close()', `${exitMs} ms`);
  check(other === '', 'no warnings or errors printed', other);
  results.push({ title, ok: !failed, ms, versions });
}

async function lintTarball(tarball) {
  const dir = join(work, 'lint');
  mkdirSync(dir);
  const [publint, attw] = await Promise.all([
    run('npm', ['exec', '--yes', `--package=${PUBLINT}`, '--', 'publint', '--strict', tarball], { cwd: dir, timeout: 120_000 }),
    run('npm', ['exec', '--yes', `--package=${ATTW}`, '--', 'attw', '--format', 'table-flipped', tarball], {
      cwd: dir,
      timeout: 120_000,
    }),
  ]);
  check(publint.code === 0, `publint (${PUBLINT})`, publint.code === 0 ? '' : publint.out);
  check(attw.code === 0, `attw (${ATTW})`, attw.code === 0 ? '' : attw.out);
}

try {
  const port = await startRedis();
  console.log(`consumer-smoke: redis-server on ${HOST}:${port} (pid ${redis.pid}), work dir ${work}`);
  const { tarball, files, size } = await pack();
  console.log(`packed ${tarball.slice(tarball.lastIndexOf('/') + 1)}: ${files.length} files, ${(size / 1024).toFixed(0)} kB`);
  const [installs] = await Promise.all([Promise.all(CONSUMERS.map((consumer) => install(consumer, tarball))), lintTarball(tarball)]);
  for (const [i, consumer] of CONSUMERS.entries()) {
    const { dir, code, out, ms } = installs[i];
    if (!check(code === 0, `${consumer.name}: npm install (${(ms / 1000).toFixed(0)} s)`, code === 0 ? '' : out)) continue;
    for (const mode of consumer.runs) await runApp(consumer, dir, mode, port);
  }
} catch (error) {
  check(false, 'consumer-smoke', error?.stack ?? String(error));
} finally {
  await stopRedis();
}
console.log(
  `consumer-smoke: ${failed ? 'FAILED' : 'passed'} in ${((Date.now() - started) / 1000).toFixed(0)} s` +
    (results.length ? ` (${results.map((r) => `${r.title} ${(r.ms / 1000).toFixed(1)} s`).join('; ')})` : ''),
);
process.exitCode = failed ? 1 : 0;
