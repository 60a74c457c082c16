/** Scenario 1: 64 concurrent loops, one key each, acquire + release; each library in its own process. */
import { LIBS, type LibName } from '../lib/adapters.js';
import { startWorker } from '../lib/children.js';
import { SETTINGS } from '../lib/settings.js';
import { median, passRatio, type PassRatio, type Summary } from '../lib/stats.js';

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
  /** Ours ÷ this library, cycles/s, within each pass: median and range. */
  oursOverThis: PassRatio;
  /** Medians of the passes. */
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
    // Rotate the order, so no library always runs first or last.
    const order = LIBS.map((_, i) => LIBS[(i + pass) % LIBS.length]!);
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
        passes.get(lib)![pass] = result;
        log(`  uncontended ${lib} pass ${pass + 1}: ${Math.round(result.cyclesPerSec)} cycles/s, p50 ${result.latency.p50.toFixed(2)} ms`);
      } finally {
        await worker.end();
      }
    }
  }
  const ours = Array.from(passes.get('ours')!, (x) => x?.cyclesPerSec);
  return Object.fromEntries(
    LIBS.map((lib) => {
      const p = passes.get(lib)!.filter((x): x is UncontendedPass => x !== undefined);
      return [
        lib,
        {
          oursOverThis: passRatio(
            ours,
            Array.from(passes.get(lib)!, (x) => x?.cyclesPerSec),
          ),
          cyclesPerSec: median(p.map((x) => x.cyclesPerSec)),
          p50: median(p.map((x) => x.latency.p50)),
          p99: median(p.map((x) => x.latency.p99)),
          serverPerCycle: median(p.map((x) => x.serverPerCycle)),
          clientPerCycle: median(p.map((x) => x.clientPerCycle)),
          clientCpuUsPerCycle: median(p.map((x) => x.clientCpuUsPerCycle)),
          serverCpuUsPerCycle: median(p.map((x) => x.serverCpuUsPerCycle)),
          passes: p,
        },
      ];
    }),
  ) as Record<LibName, UncontendedResult>;
}
