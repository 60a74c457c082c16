/**
 * Scenario 7, one process: the library's engine (`createLockClient`, as `LockModule` builds it) on one
 * topology (single node, Cluster or a Redlock quorum), in one of two jobs:
 *
 * - 'uncontended': `loops` concurrent loops, one key each, acquire + release as fast as they go;
 *   warm-up, then a measured window; cycles and cycle latencies.
 * - 'hot': `loops` contenders on ONE key, each holding it for a `workMs` async sleep; one record per
 *   acquisition on the shared clock (the same records as bench/hot-worker.ts).
 *
 * Every loop is bounded in count and time; the process exits when the parent goes away.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { LockModuleOptions } from 'nestjs-redis-lock';
import { createLockClient } from '../libs/lock/src/lock.module-definition.js';
import { now } from './lib/clock.js';
import { summarize } from './lib/stats.js';
import { workerSide } from './lib/worker.js';
import type { AcquisitionRecord } from './hot-worker.js';

export type TopologyRedis = string | string[] | { cluster: string[] };

interface Config {
  job: 'uncontended' | 'hot';
  redis: TopologyRedis;
  ttl: number;
  wait: number;
  loops: number;
  /** uncontended */
  warmupMs: number;
  durationMs: number;
  /** hot */
  key: string;
  firstContender: number;
  workMs: number;
}

const { config, send, next, finish } = workerSide<Config>();
const client = createLockClient({
  redis: config.redis as LockModuleOptions['redis'],
  keyPrefix: 'bench:topo:',
  ttl: config.ttl,
  wait: config.wait,
  autoExtend: false,
  onLockLost: 'continue',
  connectTimeout: 2_000,
});
const acquireOptions = { ttl: config.ttl, wait: config.wait };
const MAX_CYCLES_PER_LOOP = 5_000_000;
const MAX_ITERATIONS = 1_000_000;
const errors: string[] = [];
let errorCount = 0;
const noteError = (prefix: string, error: unknown) => {
  errorCount++;
  if (errors.length < 20) errors.push(`${prefix}${(error as Error).message}`);
};

// One round trip before anything is timed: connections up (on a Cluster, the slot map loaded and, for
// the hot key, the connection to its master open).
const warm = await client.acquire(config.job === 'hot' ? config.key : `warm:${process.pid}`, acquireOptions);
await warm.release();

if (config.job === 'uncontended') {
  let measuring = false;
  let stop = false;
  let cycles = 0;
  const latencies: number[] = [];
  const hardStop = now() + config.warmupMs + config.durationMs + 20_000;

  const loop = async (i: number): Promise<void> => {
    const key = `u:${i}`;
    for (let n = 0; n < MAX_CYCLES_PER_LOOP && !stop && now() < hardStop; n++) {
      const start = now();
      try {
        const held = await client.acquire(key, acquireOptions);
        await held.release();
      } catch (error) {
        noteError('', error);
        continue;
      }
      if (measuring) {
        cycles++;
        latencies.push(now() - start);
      }
    }
  };

  const loops = Array.from({ length: config.loops }, (_, i) => loop(i));
  await sleep(config.warmupMs);
  measuring = true;
  const start = now();
  const cpu = process.cpuUsage();
  await sleep(config.durationMs);
  measuring = false;
  const elapsedMs = now() - start;
  const cpuUsed = process.cpuUsage(cpu);
  stop = true;
  await Promise.all(loops);
  await client.close();
  finish({
    type: 'result',
    cycles,
    elapsedMs,
    cyclesPerSec: (cycles / elapsedMs) * 1000,
    latency: summarize(latencies),
    errors: errorCount,
    errorSamples: errors.slice(0, 5),
    cpuUs: cpuUsed.user + cpuUsed.system,
  });
} else {
  send({ type: 'ready' });
  await next('go');
  const startedAt = now();
  const deadline = startedAt + config.durationMs;
  const records: AcquisitionRecord[] = [];

  const loop = async (contender: number): Promise<void> => {
    for (let i = 0; i < MAX_ITERATIONS && now() < deadline; i++) {
      const requestedAt = now();
      let held;
      try {
        held = await client.acquire(config.key, acquireOptions);
      } catch (error) {
        noteError('', error);
        continue;
      }
      const acquiredAt = now();
      await sleep(config.workMs);
      const releaseAt = now();
      try {
        await held.release();
      } catch (error) {
        noteError('release: ', error);
      }
      records.push([contender, requestedAt, acquiredAt, releaseAt, now()]);
    }
  };

  await Promise.all(Array.from({ length: config.loops }, (_, i) => loop(config.firstContender + i)));
  await client.close();
  finish({ type: 'result', records, errors: errors.slice(0, 5), errorCount, window: [startedAt, deadline] });
}
