/** Scenario 8: the memory store against a bare in-process mutex, in one process (bench/inprocess-worker.ts). */
import { startWorker } from '../lib/children.js';
import { SETTINGS } from '../lib/settings.js';
import type { PassRatio, Summary } from '../lib/stats.js';

interface Side {
  uncontended: { cycles: number; cyclesPerSec: number };
  hot: { acquisitions: number; acquisitionsPerSec: number; jainWorst: number; starved: number; wait: Summary };
}

export interface InProcessResult {
  /** `LockClient` on `MemoryLockStore`. */
  memory: Side;
  /** A keyed FIFO promise-chain mutex. */
  mutex: Side;
  /** Memory store ÷ mutex, cycles/s, per round: median and range. */
  uncontendedRatio: PassRatio;
  /** Memory store ÷ mutex, hot-key acquisitions/s, per round. */
  hotRatio: PassRatio;
}

export async function inProcess(): Promise<InProcessResult> {
  const s = SETTINGS.inProcess;
  const worker = startWorker('inprocess-worker.ts', { ...s });
  try {
    const r = await worker.next<{ type: string } & InProcessResult>('result', s.warmupMs + 4 * s.rounds * s.roundMs + 60_000);
    return { memory: r.memory, mutex: r.mutex, uncontendedRatio: r.uncontendedRatio, hotRatio: r.hotRatio };
  } finally {
    await worker.end();
  }
}
