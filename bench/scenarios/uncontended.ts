/** Scenario 1: 64 concurrent loops, one key each, acquire + release; each library in its own process. */
import { LIBS, type LibName } from '../lib/adapters.js';
import { startWorker } from '../lib/children.js';
import { SETTINGS } from '../lib/settings.js';
import type { Summary } from '../lib/stats.js';

export interface UncontendedPass {
  cycles: number;
  cyclesPerSec: number;
  latency: Summary;
  serverPerCycle: number;
  clientPerCycle: number;
  clientCpuUsPerCycle: number;
  serverCpuUsPerCycle: number;
  serverByName: Record<string, number>;
  clientByName: Record<string, number>;
  errors: number;
}

export interface UncontendedResult {
  /** Mean of the passes. */
  cyclesPerSec: number;
  p50: number;
  p99: number;
  serverPerCycle: number;
  clientPerCycle: number;
  /** CPU time of the benchmark process and of redis-server per cycle, µs. */
  clientCpuUsPerCycle: number;
  serverCpuUsPerCycle: number;
  passes: UncontendedPass[];
}

export async function uncontended(url: string, log: (line: string) => void): Promise<Record<LibName, UncontendedResult>> {
  const s = SETTINGS.uncontended;
  const passes = new Map<LibName, UncontendedPass[]>(LIBS.map((lib) => [lib, []]));
  for (let pass = 0; pass < s.passes; pass++) {
    // Alternate the order, so no library always runs first or last.
    const order = pass % 2 === 0 ? [...LIBS] : [...LIBS].reverse();
    for (const lib of order) {
      const worker = startWorker('uncontended-worker.ts', {
        lib,
        url,
        ttl: s.ttl,
        loops: s.loops,
        warmupMs: s.warmupMs,
        durationMs: s.durationMs,
      });
      try {
        const result = await worker.next<UncontendedPass & { type: string }>('result', s.warmupMs + s.durationMs + 30_000);
        passes.get(lib)!.push(result);
        log(`  uncontended ${lib} pass ${pass + 1}: ${Math.round(result.cyclesPerSec)} cycles/s, p50 ${result.latency.p50.toFixed(2)} ms`);
      } finally {
        await worker.end();
      }
    }
  }
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  return Object.fromEntries(
    LIBS.map((lib) => {
      const p = passes.get(lib)!;
      return [
        lib,
        {
          cyclesPerSec: mean(p.map((x) => x.cyclesPerSec)),
          p50: mean(p.map((x) => x.latency.p50)),
          p99: mean(p.map((x) => x.latency.p99)),
          serverPerCycle: mean(p.map((x) => x.serverPerCycle)),
          clientPerCycle: mean(p.map((x) => x.clientPerCycle)),
          clientCpuUsPerCycle: mean(p.map((x) => x.clientCpuUsPerCycle)),
          serverCpuUsPerCycle: mean(p.map((x) => x.serverCpuUsPerCycle)),
          passes: p,
        },
      ];
    }),
  ) as Record<LibName, UncontendedResult>;
}
