/**
 * Scenarios 2 and 3, one process of the hot-key run: `loops` contenders on ONE key. Each holds the
 * lock for `work`: a real 1 ms async sleep (setTimeout), or a non-atomic GET, 1 ms sleep, SET + 1 on
 * a counter key (mode 'count'; lib 'none' does it without any lock, to show the race).
 * Reports one record per acquisition on the shared clock, and the commands its clients sent.
 */
import { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import { createAdapter, type LibName, type LockAdapter } from './lib/adapters.js';
import { now } from './lib/clock.js';
import { sentCommands } from './lib/commands.js';
import { workerSide } from './lib/worker.js';

interface Config {
  lib: LibName | 'none';
  url: string;
  ttl: number;
  key: string;
  counterKey: string;
  mode: 'hold' | 'count';
  /** Contender ids of this process: firstContender .. firstContender + loops - 1. */
  firstContender: number;
  loops: number;
  durationMs: number;
  workMs: number;
}

/** [contender, requestedAt, acquiredAt, releaseAt (release sent), releasedAt], ms on the shared clock. */
export type AcquisitionRecord = [number, number, number, number, number];

const { config, send, next, finish } = workerSide<Config>();
const adapter: LockAdapter | undefined = config.lib === 'none' ? undefined : await createAdapter(config.lib, config);
const counter = sentCommands.exclude(new Redis(config.url));
await counter.ping();
send({ type: 'ready' });
await next('go');
sentCommands.reset();
const startedAt = now();
const deadline = startedAt + config.durationMs;
const records: AcquisitionRecord[] = [];
const errors: string[] = [];
const MAX_ITERATIONS = 1_000_000;

async function work(): Promise<void> {
  if (config.mode === 'hold') {
    await sleep(config.workMs);
    return;
  }
  const value = Number(await counter.get(config.counterKey));
  await sleep(config.workMs);
  await counter.set(config.counterKey, value + 1);
}

async function loop(contender: number): Promise<void> {
  for (let i = 0; i < MAX_ITERATIONS && now() < deadline; i++) {
    const requestedAt = now();
    let held;
    try {
      held = adapter ? await adapter.acquire(config.key) : undefined;
    } catch (error) {
      errors.push((error as Error).message);
      continue;
    }
    const acquiredAt = now();
    await work();
    const releaseAt = now();
    try {
      await held?.release();
    } catch (error) {
      errors.push(`release: ${(error as Error).message}`);
    }
    records.push([contender, requestedAt, acquiredAt, releaseAt, now()]);
  }
}

await Promise.all(Array.from({ length: config.loops }, (_, i) => loop(config.firstContender + i)));
const sent = sentCommands.snapshot();
await adapter?.close();
counter.disconnect();
finish({ type: 'result', records, errors: errors.slice(0, 20), errorCount: errors.length, sent, window: [startedAt, deadline] });
