/**
 * Scenario 5: the same uncontended work through `@WithLock` and through `LockService.using`, in one
 * Nest application context (`LockModule.forRoot`, module defaults, so heartbeats on in both paths),
 * and through the floor (a bare `SET NX PX` + Lua owner-checked DEL on a plain ioredis client, the
 * benchmark's floor adapter) in the same process. The three paths take turns in short rounds, in a
 * rotating order, so drift of the machine hits all alike; ratios are taken within each round.
 */
import 'reflect-metadata';
import { Inject, Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService, WithLock } from 'nestjs-redis-lock';
import { createAdapter } from './lib/adapters.js';
import { now } from './lib/clock.js';
import { passRatio, summarize } from './lib/stats.js';
import { workerSide } from './lib/worker.js';

interface Config {
  url: string;
  loops: number;
  warmupMs: number;
  roundMs: number;
  rounds: number;
}

const { config, finish } = workerSide<Config>();

@Injectable()
class Ledger {
  constructor(@Inject(LockService) private readonly locks: LockService) {}

  @WithLock((loop: number) => `deco:${loop}`)
  async decorated(loop: number): Promise<number> {
    return loop;
  }

  direct(loop: number): Promise<number> {
    return this.locks.using(`direct:${loop}`, {}, async () => loop);
  }
}

@Module({
  imports: [LockModule.forRoot({ redis: config.url, keyPrefix: 'bench:nest:' })],
  providers: [Ledger],
})
class BenchModule {}

const app = await NestFactory.createApplicationContext(BenchModule, { logger: false });
await app.init();
const ledger = app.get(Ledger);
const floor = await createAdapter('floor', { url: config.url, ttl: 10_000 });
const PATHS = ['decorated', 'direct', 'floor'] as const;
type Path = (typeof PATHS)[number];
const run: Record<Path, (loop: number) => Promise<unknown>> = {
  decorated: (loop) => ledger.decorated(loop),
  direct: (loop) => ledger.direct(loop),
  floor: async (loop) => (await floor.acquire(`floor:${loop}`)).release(),
};
const MAX_CYCLES_PER_LOOP = 5_000_000;

/** Runs `loops` concurrent loops of `path` for `ms`; returns cycles and their latencies. */
async function round(path: Path, ms: number) {
  const latencies: number[] = [];
  const end = now() + ms;
  const start = now();
  await Promise.all(
    Array.from({ length: config.loops }, async (_, loop) => {
      for (let n = 0; n < MAX_CYCLES_PER_LOOP && now() < end; n++) {
        const t = now();
        await run[path](loop);
        latencies.push(now() - t);
      }
    }),
  );
  return { cycles: latencies.length, elapsed: now() - start, latencies };
}

for (const path of PATHS) await round(path, config.warmupMs / PATHS.length);
const totals = Object.fromEntries(
  PATHS.map((path) => [path, { cycles: 0, elapsed: 0, latencies: [] as number[], rates: [] as number[] }]),
) as Record<Path, { cycles: number; elapsed: number; latencies: number[]; rates: number[] }>;
for (let r = 0; r < config.rounds; r++) {
  // Rotating order: no path always goes first or last.
  for (let i = 0; i < PATHS.length; i++) {
    const path = PATHS[(i + r) % PATHS.length]!;
    const result = await round(path, config.roundMs);
    totals[path].cycles += result.cycles;
    totals[path].elapsed += result.elapsed;
    totals[path].rates[r] = (result.cycles / result.elapsed) * 1000;
    for (const l of result.latencies) totals[path].latencies.push(l);
  }
}
await floor.close();
await app.close();

const view = (t: (typeof totals)[Path]) => ({
  cycles: t.cycles,
  cyclesPerSec: (t.cycles / t.elapsed) * 1000,
  latency: summarize(t.latencies),
});
finish({
  type: 'result',
  decorated: view(totals.decorated),
  direct: view(totals.direct),
  floor: view(totals.floor),
  decoratedOverFloor: passRatio(totals.decorated.rates, totals.floor.rates),
  directOverFloor: passRatio(totals.direct.rates, totals.floor.rates),
  decoratedOverDirect: passRatio(totals.decorated.rates, totals.direct.rates),
});
