/** Scenario 5: `@WithLock` vs `LockService.using` in one Nest application context. */
import { startWorker } from '../lib/children.js';
import { SETTINGS } from '../lib/settings.js';
import type { Summary } from '../lib/stats.js';

interface PathResult {
  cycles: number;
  cyclesPerSec: number;
  latency: Summary;
}

export interface DecoratorResult {
  decorated: PathResult;
  direct: PathResult;
  /** Throughput of @WithLock / throughput of using(). */
  ratio: number;
  /** 1 - ratio, as a percentage: how much slower the decorator is. */
  overheadPct: number;
}

export async function decorator(url: string): Promise<DecoratorResult> {
  const s = SETTINGS.decorator;
  const worker = startWorker('nest-worker.ts', { url, loops: s.loops, warmupMs: s.warmupMs, roundMs: s.roundMs, rounds: s.rounds });
  try {
    const r = await worker.next<{ type: string; decorated: PathResult; direct: PathResult }>(
      'result',
      s.warmupMs + 2 * s.rounds * s.roundMs + 60_000,
    );
    const ratio = r.decorated.cyclesPerSec / r.direct.cyclesPerSec;
    return { decorated: r.decorated, direct: r.direct, ratio, overheadPct: (1 - ratio) * 100 };
  } finally {
    await worker.end();
  }
}
