/** Scenario 6: many acquire/release cycles of ours, on a private redis-server so DBSIZE counts only our keys. */
import { startRedis } from '../../test/helpers/redis-server.js';
import { startWorker } from '../lib/children.js';
import { SETTINGS } from '../lib/settings.js';

interface Sample {
  cycles: number;
  atMs: number;
  heapUsed: number;
  dbsize: number;
  tables: Record<string, number>;
}

export interface MemoryResult {
  target: number;
  measuredCycles: number;
  seconds: number;
  cyclesPerSec: number;
  errors: number;
  before: Sample;
  after: Sample;
  heapDeltaBytes: number;
  dbsizeDelta: number;
  samples: Sample[];
}

export async function memory(): Promise<MemoryResult> {
  const s = SETTINGS.memory;
  const server = await startRedis();
  try {
    const worker = startWorker(
      'memory-worker.ts',
      { url: server.url, loops: s.loops, keys: s.keys, cycles: s.cycles, warmupCycles: s.warmupCycles, maxMs: s.maxMs, samples: s.samples },
      ['--expose-gc'],
    );
    try {
      const r = await worker.next<{
        type: string;
        measuredCycles: number;
        seconds: number;
        errors: number;
        before: Sample;
        after: Sample;
        samples: Sample[];
      }>('result', s.maxMs + 120_000);
      return {
        target: s.cycles,
        measuredCycles: r.measuredCycles,
        seconds: r.seconds,
        cyclesPerSec: r.measuredCycles / r.seconds,
        errors: r.errors,
        before: r.before,
        after: r.after,
        heapDeltaBytes: r.after.heapUsed - r.before.heapUsed,
        dbsizeDelta: r.after.dbsize - r.before.dbsize,
        samples: r.samples,
      };
    } finally {
      await worker.end();
    }
  } finally {
    await server.stop();
  }
}
