/**
 * Scenario 5: the same uncontended work through `@WithLock` and through `LockService.using`, in one
 * Nest application context (`LockModule.forRoot`, module defaults, so heartbeats on in both paths).
 * The two paths alternate in short rounds, so drift of the machine hits both alike.
 */
import 'reflect-metadata';
import { Inject, Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService, WithLock } from 'nestjs-redis-lock';
import { now } from './lib/clock.js';
import { summarize } from './lib/stats.js';
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
const MAX_CYCLES_PER_LOOP = 5_000_000;

/** Runs `loops` concurrent loops of `path` for `ms`; returns cycles and their latencies. */
async function round(path: 'decorated' | 'direct', ms: number) {
  const latencies: number[] = [];
  const end = now() + ms;
  const start = now();
  await Promise.all(
    Array.from({ length: config.loops }, async (_, loop) => {
      for (let n = 0; n < MAX_CYCLES_PER_LOOP && now() < end; n++) {
        const t = now();
        await ledger[path](loop);
        latencies.push(now() - t);
      }
    }),
  );
  return { cycles: latencies.length, elapsed: now() - start, latencies };
}

await round('decorated', config.warmupMs / 2);
await round('direct', config.warmupMs / 2);
const totals = {
  decorated: { cycles: 0, elapsed: 0, latencies: [] as number[] },
  direct: { cycles: 0, elapsed: 0, latencies: [] as number[] },
};
for (let r = 0; r < config.rounds; r++) {
  // ABBA order: neither path always goes first.
  const order: ('decorated' | 'direct')[] = r % 2 === 0 ? ['decorated', 'direct'] : ['direct', 'decorated'];
  for (const path of order) {
    const result = await round(path, config.roundMs);
    totals[path].cycles += result.cycles;
    totals[path].elapsed += result.elapsed;
    for (const l of result.latencies) totals[path].latencies.push(l);
  }
}
await app.close();

const view = (t: (typeof totals)['direct']) => ({
  cycles: t.cycles,
  cyclesPerSec: (t.cycles / t.elapsed) * 1000,
  latency: summarize(t.latencies),
});
finish({ type: 'result', decorated: view(totals.decorated), direct: view(totals.direct) });
