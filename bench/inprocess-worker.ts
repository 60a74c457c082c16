/**
 * Scenario 8: the memory store (`LockClient` on `MemoryLockStore`, as `LockModule.forRoot({ store: 'memory' })`
 * builds it) against a bare in-process mutex (a FIFO promise chain per key, what a single-process app
 * would write instead), in one process. Two workloads, in rounds that alternate the two locks in a
 * rotating order; ratios are taken within each round:
 * - uncontended: `loops` concurrent loops, one key each, acquire + release;
 * - hot key: `contenders` loops on one key, each holding it `workMs` (a timer), with per-contender counts
 *   (Jain's index) and waits.
 */
import { LockClient, MemoryLockStore } from 'nestjs-redis-lock';
import { now } from './lib/clock.js';
import { jain, passRatio, summarize } from './lib/stats.js';
import { workerSide } from './lib/worker.js';

interface Config {
  loops: number;
  contenders: number;
  workMs: number;
  ttl: number;
  warmupMs: number;
  roundMs: number;
  rounds: number;
}

const { config, finish } = workerSide<Config>();

/** The floor: a keyed FIFO mutex, one promise chain per key, nothing else. */
class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async acquire(key: string): Promise<() => void> {
    const previous = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous ? previous.then(() => mine) : mine;
    this.tails.set(key, tail);
    if (previous) await previous;
    return () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }
}

const mutex = new KeyedMutex();
// Module defaults of the memory store (lock.module-definition.ts), as scenario 1's adapter: heartbeat off, wait raised.
const locks = new LockClient({
  store: new MemoryLockStore(),
  ownsStore: true,
  ttl: config.ttl,
  wait: 30_000,
  autoExtend: false,
  onLockLost: 'continue',
  connectTimeout: 2_000,
});

const LOCKS = ['memory', 'mutex'] as const;
type Which = (typeof LOCKS)[number];
const acquire: Record<Which, (key: string) => Promise<() => unknown>> = {
  memory: async (key) => {
    const held = await locks.acquire(key);
    return () => held.release();
  },
  mutex: (key) => mutex.acquire(key),
};
const MAX_CYCLES_PER_LOOP = 50_000_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function uncontended(which: Which, ms: number) {
  const end = now() + ms;
  const start = now();
  let cycles = 0;
  await Promise.all(
    Array.from({ length: config.loops }, async (_, loop) => {
      const key = `u:${which}:${loop}`;
      for (let n = 0; n < MAX_CYCLES_PER_LOOP && now() < end; n++) {
        const release = await acquire[which](key);
        await release();
        cycles++;
      }
    }),
  );
  return { cycles, elapsed: now() - start };
}

async function hot(which: Which, ms: number) {
  const end = now() + ms;
  const start = now();
  const counts = new Array<number>(config.contenders).fill(0);
  const waits: number[] = [];
  await Promise.all(
    Array.from({ length: config.contenders }, async (_, c) => {
      for (let n = 0; n < MAX_CYCLES_PER_LOOP && now() < end; n++) {
        const t = now();
        const release = await acquire[which](`hot:${which}`);
        waits.push(now() - t);
        await sleep(config.workMs);
        await release();
        counts[c]!++;
      }
    }),
  );
  return { acquisitions: counts.reduce((a, b) => a + b, 0), elapsed: now() - start, counts, waits };
}

for (const which of LOCKS) {
  await uncontended(which, config.warmupMs / 4);
  await hot(which, config.warmupMs / 4);
}
type Totals = { cycles: number; elapsed: number; rates: number[] };
const un = { memory: { cycles: 0, elapsed: 0, rates: [] }, mutex: { cycles: 0, elapsed: 0, rates: [] } } as Record<Which, Totals>;
const ho = {
  memory: { cycles: 0, elapsed: 0, rates: [], counts: [] as number[][], waits: [] as number[] },
  mutex: { cycles: 0, elapsed: 0, rates: [], counts: [] as number[][], waits: [] as number[] },
} as Record<Which, Totals & { counts: number[][]; waits: number[] }>;
for (let r = 0; r < config.rounds; r++) {
  for (let i = 0; i < LOCKS.length; i++) {
    const which = LOCKS[(i + r) % LOCKS.length]!;
    const u = await uncontended(which, config.roundMs);
    un[which].cycles += u.cycles;
    un[which].elapsed += u.elapsed;
    un[which].rates[r] = (u.cycles / u.elapsed) * 1000;
    const h = await hot(which, config.roundMs);
    ho[which].cycles += h.acquisitions;
    ho[which].elapsed += h.elapsed;
    ho[which].rates[r] = (h.acquisitions / h.elapsed) * 1000;
    ho[which].counts.push(h.counts);
    for (const w of h.waits) ho[which].waits.push(w);
  }
}
await locks.close();

const view = (which: Which) => ({
  uncontended: { cycles: un[which].cycles, cyclesPerSec: (un[which].cycles / un[which].elapsed) * 1000 },
  hot: {
    acquisitions: ho[which].cycles,
    acquisitionsPerSec: (ho[which].cycles / ho[which].elapsed) * 1000,
    // Jain's index per round (the contenders' shares within one round), worst round.
    jainWorst: Math.min(...ho[which].counts.map(jain)),
    starved: ho[which].counts.reduce((n, counts) => n + counts.filter((c) => c === 0).length, 0),
    wait: summarize(ho[which].waits),
  },
});
finish({
  type: 'result',
  memory: view('memory'),
  mutex: view('mutex'),
  uncontendedRatio: passRatio(un.memory.rates, un.mutex.rates),
  hotRatio: passRatio(ho.memory.rates, ho.mutex.rates),
});
