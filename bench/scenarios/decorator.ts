/** Scenario 5: `@WithLock` vs `LockService.using` in one Nest application context. */
import { startWorker } from '../lib/children.js';
import { SETTINGS } from '../lib/settings.js';
import type { PassRatio, Summary } from '../lib/stats.js';

interface PathResult {
  cycles: number;
  cyclesPerSec: number;
  latency: Summary;
}

export interface DecoratorResult {
  decorated: PathResult;
  direct: PathResult;
  /** The floor adapter in the same process and rounds. */
  floor: PathResult;
  /** Throughput of @WithLock / throughput of using(), median of the rounds. */
  ratio: number;
  /** 1 - ratio, as a percentage: how much slower the decorator is. */
  overheadPct: number;
  /** Per-round ratios: @WithLock ÷ floor, using() ÷ floor, @WithLock ÷ using(). */
  decoratedOverFloor: PassRatio;
  directOverFloor: PassRatio;
  decoratedOverDirect: PassRatio;
}

export async function decorator(url: string): Promise<DecoratorResult> {
  const s = SETTINGS.decorator;
  const worker = startWorker('nest-worker.ts', { url, loops: s.loops, warmupMs: s.warmupMs, roundMs: s.roundMs, rounds: s.rounds });
  try {
    const r = await worker.next<{ type: string } & Omit<DecoratorResult, 'ratio' | 'overheadPct'>>(
      'result',
      s.warmupMs + 3 * s.rounds * s.roundMs + 60_000,
    );
    const ratio = r.decoratedOverDirect.median;
    return {
      decorated: r.decorated,
      direct: r.direct,
      floor: r.floor,
      ratio,
      overheadPct: (1 - ratio) * 100,
      decoratedOverFloor: r.decoratedOverFloor,
      directOverFloor: r.directOverFloor,
      decoratedOverDirect: r.decoratedOverDirect,
    };
  } finally {
    await worker.end();
  }
}
