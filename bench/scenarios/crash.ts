/**
 * Scenario 4: a holder process takes the lock (ttl 1 s) and is SIGKILLed; waiters in other processes
 * start waiting at random times within `arrivalSpreadMs` after it took the lock and are all waiting
 * when it dies. Measures from the lock's expiry (the holder's acquire round-trip midpoint + ttl)
 * until the first waiter has it.
 */
import type { LibName } from '../lib/adapters.js';
import { startWorker, type Worker } from '../lib/children.js';
import { SETTINGS } from '../lib/settings.js';
import { median } from '../lib/stats.js';

export interface CrashResult {
  /** ms after the ttl ran out, one per repeat. */
  afterExpiry: number[];
  median: number;
  worst: number;
  errors: string[];
}

export async function crash(lib: LibName, url: string, runId: string): Promise<CrashResult> {
  const s = SETTINGS.crash;
  const waiters: Worker[] = [];
  const afterExpiry: number[] = [];
  const errors: string[] = [];
  try {
    for (let i = 0; i < s.waiters; i++) {
      waiters.push(startWorker('crash-worker.ts', { lib, url, ttl: s.ttl, key: '', role: 'waiter', rounds: s.repeats + 1 }));
    }
    await Promise.all(waiters.map((w) => w.next('ready', 30_000)));
    for (let round = 0; round < s.repeats; round++) {
      const key = `crash:${runId}:${round}`;
      const holder = startWorker('crash-worker.ts', { lib, url, ttl: s.ttl, key, role: 'holder', rounds: 1 });
      try {
        await holder.next('ready', 30_000);
        holder.send({ type: 'take' });
        const held = await holder.next<{ type: string; sentAt: number; acquiredAt: number }>('acquired', 30_000);
        for (const w of waiters) w.send({ type: 'go', round, key, delayMs: Math.random() * s.arrivalSpreadMs });
        await new Promise((resolve) => setTimeout(resolve, s.killAfterMs));
        await holder.kill();
        const got = await Promise.all(
          waiters.map((w) => w.next<{ type: string; acquiredAt?: number; error?: string }>('acquired', s.ttl + 35_000)),
        );
        for (const g of got) if (g.error) errors.push(g.error);
        const first = Math.min(...got.map((g) => g.acquiredAt ?? Infinity));
        const expiry = (held.sentAt + held.acquiredAt) / 2 + s.ttl;
        afterExpiry.push(first - expiry);
      } finally {
        await holder.kill();
      }
    }
    for (const w of waiters) w.send({ type: 'go', round: -1, key: '', delayMs: 0 });
    await Promise.all(waiters.map((w) => w.end()));
  } finally {
    await Promise.all(waiters.map((w) => w.kill()));
  }
  return { afterExpiry, median: median(afterExpiry), worst: Math.max(...afterExpiry), errors };
}
