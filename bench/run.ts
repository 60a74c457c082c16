/**
 * `npm run bench [-- --quick] [-- --only=uncontended,hot,correctness,crash,decorator,memory,topologies,inprocess]`
 *
 * nestjs-redis-lock against the locks a user would pick instead, in one run on one Redis
 * (REDIS_URL, which `npm run bench` points at a private redis-server; without it, one is started here).
 * Prints Markdown tables and writes bench/results/latest.json (+ latest.md); partial or quick runs
 * write latest.tmp.json instead. See bench/README.md for what each scenario measures.
 */
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { startRedis, type RedisServerHandle } from '../test/helpers/redis-server.js';
import { LIBS, WAIT_BUDGET_MS, type LibName } from './lib/adapters.js';
import { killAll, startWorker } from './lib/children.js';
import { redisVersion } from './lib/redis-info.js';
import { renderMarkdown, targets } from './lib/report.js';
import { SETTINGS } from './lib/settings.js';
import { crash, type CrashResult } from './scenarios/crash.js';
import { decorator, type DecoratorResult } from './scenarios/decorator.js';
import { hotKey, lostUpdates, type CountResult, type HotResult } from './scenarios/hot-key.js';
import { inProcess, type InProcessResult } from './scenarios/in-process.js';
import { memory, type MemoryResult } from './scenarios/memory.js';
import { topologies, type TopologiesResult } from './scenarios/topologies.js';
import { uncontended, type UncontendedResult } from './scenarios/uncontended.js';

const SCENARIOS = ['uncontended', 'hot', 'correctness', 'crash', 'decorator', 'memory', 'topologies', 'inprocess'] as const;
type Scenario = (typeof SCENARIOS)[number];
/** The whole run must end within this; past it, every worker is killed and the run fails. */
const HARD_LIMIT_MS = 20 * 60_000;

export interface BenchResults {
  machine: { cpuModel: string; cores: number; totalMemGiB: number; os: string; node: string; redis: string; date: string };
  settings: typeof SETTINGS & { waitBudgetMs: number };
  uncontended?: Record<LibName, UncontendedResult>;
  hotKey?: Partial<Record<LibName, HotResult>>;
  correctness?: Partial<Record<LibName | 'none', CountResult>>;
  crash?: Partial<Record<LibName, CrashResult>>;
  decorator?: DecoratorResult;
  memory?: MemoryResult;
  topologies?: TopologiesResult;
  inProcess?: InProcessResult;
  targets?: ReturnType<typeof targets>;
  /** `--link=MS`: scenarios 1-5 reached Redis through a proxy delaying every chunk MS ms each way. */
  linkDelayMs?: number;
  failures: string[];
  durationSec?: number;
}

const libsArg = process.argv.find((a) => a.startsWith('--libs='));
/** The libraries of scenarios 2–4 (`--libs=ours,floor` while working on one of them). */
const RUN_LIBS = libsArg ? (libsArg.slice(7).split(',') as LibName[]) : [...LIBS];
for (const name of RUN_LIBS) if (!LIBS.includes(name)) throw new Error(`unknown library "${name}"; known: ${LIBS.join(', ')}`);
const linkArg = process.argv.find((a) => a.startsWith('--link='));
/**
 * `--link=MS`: scenarios 1-5 reach Redis through bench/delay-proxy.ts, every chunk delayed MS ms each
 * way (the round-trip-bound regime of a real network; this kernel has no netem). Written to
 * results/latest-link.{json,md}, never over the loopback results.
 */
const LINK_MS = linkArg ? Number(linkArg.slice(7)) : 0;
if (!(Number.isInteger(LINK_MS) && LINK_MS >= 0 && LINK_MS <= 50)) throw new Error(`--link takes whole ms from 0 to 50, got "${linkArg}"`);
const onlyArg = process.argv.find((a) => a.startsWith('--only='));
const only = onlyArg ? (onlyArg.slice(7).split(',') as Scenario[]) : [...SCENARIOS];
for (const name of only) if (!SCENARIOS.includes(name)) throw new Error(`unknown scenario "${name}"; known: ${SCENARIOS.join(', ')}`);
const log = (line: string) => process.stderr.write(`${line}\n`);

const hardLimit = setTimeout(() => {
  log(`bench: still running after ${HARD_LIMIT_MS / 60_000} min; killing the workers`);
  killAll();
  process.exit(1);
}, HARD_LIMIT_MS);
hardLimit.unref();

let ownServer: RedisServerHandle | undefined;
let url = process.env.REDIS_URL;
if (!url) {
  ownServer = await startRedis();
  url = ownServer.url;
  log(`bench: REDIS_URL not set; started redis-server on ${url}`);
}
const probe = new Redis(url);
/** The URL the libraries use: Redis itself, or the delaying proxy in front of it (`--link`). */
let clientUrl = url;
if (LINK_MS > 0) {
  const target = new URL(url);
  if (!['127.0.0.1', 'localhost'].includes(target.hostname)) throw new Error(`--link needs Redis on loopback, got ${target.hostname}`);
  const proxy = startWorker('delay-proxy.ts', { targets: [Number(target.port)], delayMs: LINK_MS });
  const { ports } = await proxy.next<{ type: 'ready'; ports: number[] }>('ready', 30_000);
  target.hostname = '127.0.0.1';
  target.port = String(ports[0]);
  clientUrl = target.toString();
  log(`bench: the libraries reach Redis through a proxy delaying every chunk ${LINK_MS} ms each way (port ${ports[0]})`);
}
const started = Date.now();
const runId = randomBytes(4).toString('hex');
const results: BenchResults = {
  machine: {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    totalMemGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    redis: await redisVersion(probe),
    date: new Date().toISOString(),
  },
  settings: { ...SETTINGS, waitBudgetMs: WAIT_BUDGET_MS },
  ...(LINK_MS > 0 ? { linkDelayMs: LINK_MS } : {}),
  failures: [],
};

async function step<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
  const t = Date.now();
  log(`bench: ${name} ...`);
  try {
    const value = await fn();
    log(`bench: ${name} done in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    return value;
  } catch (error) {
    const message = `${name}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
    log(`bench: FAILED ${message}`);
    results.failures.push(message);
    return undefined;
  }
}

try {
  if (only.includes('uncontended')) results.uncontended = await step('1. uncontended', () => uncontended(clientUrl, log));
  if (only.includes('hot')) {
    results.hotKey = {};
    for (const lib of RUN_LIBS) {
      const r = await step(`2. hot key: ${lib}`, () => hotKey(lib, clientUrl, probe, runId));
      if (r) {
        results.hotKey[lib] = r;
        log(
          `  ${Math.round(r.acquisitionsPerSec)} acq/s, changed hands ${(r.changedHands * 100).toFixed(0)}%, wait p99 ${r.wait.p99.toFixed(1)} ms, Jain ${r.perContender.jain.toFixed(3)}`,
        );
      }
    }
  }
  if (only.includes('correctness')) {
    results.correctness = {};
    for (const lib of [...RUN_LIBS, 'none' as const]) {
      const r = await step(`3. correctness: ${lib}`, () => lostUpdates(lib, clientUrl, probe, runId));
      if (r) {
        results.correctness[lib] = r;
        log(`  ${r.increments} increments, ${r.lostUpdates} lost`);
      }
    }
  }
  if (only.includes('crash')) {
    results.crash = {};
    for (const lib of RUN_LIBS) {
      const r = await step(`4. crash: ${lib}`, () => crash(lib, clientUrl, runId));
      if (r) {
        results.crash[lib] = r;
        log(`  after ttl: ${r.afterExpiry.map((x) => x.toFixed(1)).join(', ')} ms`);
      }
    }
  }
  if (only.includes('decorator')) results.decorator = await step('5. decorator overhead', () => decorator(clientUrl));
  if (only.includes('memory')) results.memory = await step('6. memory', () => memory());
  if (only.includes('topologies')) {
    results.topologies = await step('7. topologies', () => topologies(runId, log));
    for (const error of results.topologies?.errors ?? []) results.failures.push(`7. topologies: ${error}`);
  }
  if (only.includes('inprocess')) results.inProcess = await step('8. memory store vs an in-process mutex', () => inProcess());
} finally {
  await cleanup();
}

results.targets = targets(results);
results.durationSec = Math.round((Date.now() - started) / 1000);
const markdown = renderMarkdown(results);
process.stdout.write(`\n${markdown}\n`);
const dir = fileURLToPath(new URL('./results/', import.meta.url));
const complete = !SETTINGS.quick && only.length === SCENARIOS.length && RUN_LIBS.length === LIBS.length;
const base = LINK_MS > 0 ? 'latest-link' : complete ? 'latest' : 'latest.tmp';
mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(`${dir}${base}.md`, markdown);
log(
  `bench: wrote bench/results/${base}.json and ${base}.md in ${results.durationSec} s${results.failures.length ? `; ${results.failures.length} scenario(s) FAILED` : ''}`,
);
process.exit(results.failures.length ? 1 : 0);

/** Deletes the benchmark's keys (all under `bench:`) and closes what this process opened. */
async function cleanup(): Promise<void> {
  try {
    let cursor = '0';
    for (let page = 0; page < 10_000; page++) {
      const [next, keys] = await probe.scan(cursor, 'MATCH', 'bench:*', 'COUNT', 1000);
      if (keys.length) await probe.del(...keys);
      cursor = next;
      if (cursor === '0') break;
    }
  } catch (error) {
    log(`bench: could not delete the bench:* keys: ${(error as Error).message}`);
  }
  probe.disconnect();
  killAll();
  await ownServer?.stop();
}
