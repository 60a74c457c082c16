/**
 * Scenario 6 (node --expose-gc): up to `cycles` acquire/release cycles of LockClient + RedisLockStore
 * with `loops` concurrent loops, bounded by `maxMs`. Heap used (after gc) and DBSIZE after a warm-up
 * and at the end, sampled along the way; also the engine's internal tables, which must stay empty.
 */
import { Redis } from 'ioredis';
import { LockClient, RedisLockStore } from 'nestjs-redis-lock';
import { now } from './lib/clock.js';
import { workerSide } from './lib/worker.js';

interface Config {
  url: string;
  loops: number;
  /** Loop i locks key `m:${i % keys}`: with keys < loops, some loops wait for each other. */
  keys: number;
  cycles: number;
  warmupCycles: number;
  maxMs: number;
  samples: number;
}

const { config, finish } = workerSide<Config>();
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

const client = new Redis(config.url);
const probe = new Redis(config.url);
const store = new RedisLockStore({ client, keyPrefix: 'bench:mem:' });
const locks = new LockClient({
  store,
  ownsStore: true,
  ttl: 10_000,
  wait: 30_000,
  autoExtend: false,
  onLockLost: 'continue',
  connectTimeout: 2_000,
});

let done = 0;
let errors = 0;
let target = config.warmupCycles;
let stopAt = Infinity;

async function loop(i: number): Promise<void> {
  const key = `m:${i % config.keys}`;
  while (done < target && now() < stopAt) {
    done++;
    try {
      const lock = await locks.acquire(key);
      await lock.release();
    } catch {
      errors++;
    }
  }
}

async function run(cycles: number, until: number): Promise<void> {
  target = cycles;
  stopAt = until;
  await Promise.all(Array.from({ length: config.loops }, (_, i) => loop(i)));
}

/** Private tables of the engine, read for the leak check only. */
function tables() {
  const c = locks as unknown as { held: Set<unknown>; waiters: Set<unknown> };
  // The Redis store keeps its channels in its subscriber (core/store/redis/subscriber.ts).
  const s = (store as unknown as { subscriber: unknown }).subscriber as {
    subscribed: Map<unknown, unknown>;
    lingering: Map<unknown, unknown>;
    watchers: { byKey: Map<unknown, unknown> };
  };
  return {
    held: c.held.size,
    waiters: c.waiters.size,
    subscribed: s.subscribed.size,
    lingering: s.lingering.size,
    watchedKeys: s.watchers.byKey.size,
  };
}

async function measure() {
  gc!();
  await new Promise((resolve) => setImmediate(resolve));
  gc!();
  return { cycles: done, atMs: now() - started, heapUsed: process.memoryUsage().heapUsed, dbsize: await probe.dbsize(), tables: tables() };
}

const started = now();
await run(config.warmupCycles, Infinity);
const before = await measure();
const samples = [before];
const deadline = now() + config.maxMs;
const step = Math.ceil(config.cycles / config.samples);
for (let s = 1; s <= config.samples && done < config.warmupCycles + config.cycles && now() < deadline; s++) {
  await run(Math.min(config.warmupCycles + s * step, config.warmupCycles + config.cycles), deadline);
  samples.push(await measure());
}
const after = samples[samples.length - 1]!;
await locks.close();
client.disconnect();
probe.disconnect();
finish({
  type: 'result',
  measuredCycles: after.cycles - before.cycles,
  errors,
  seconds: (after.atMs - before.atMs) / 1000,
  before,
  after,
  samples,
});
