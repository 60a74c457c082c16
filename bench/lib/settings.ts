/** Every setting of the benchmark in one place: the same for every library. `--quick` shortens the runs (for development only). */
const quick = process.argv.includes('--quick');
const scale = (ms: number) => (quick ? Math.max(300, Math.round(ms / 4)) : ms);

export const SETTINGS = {
  quick,
  uncontended: { loops: 64, ttl: 10_000, warmupMs: scale(500), durationMs: scale(2_000), passes: quick ? 1 : 5 },
  hot: { processes: 4, loopsPerProcess: 4, ttl: 10_000, workMs: 1, durationMs: scale(5_000) },
  correctness: { durationMs: scale(3_000) },
  crash: { ttl: 1_000, waiters: 2, repeats: quick ? 2 : 5, arrivalSpreadMs: 400, killAfterMs: 500 },
  decorator: { loops: 64, warmupMs: scale(1_000), roundMs: scale(1_000), rounds: quick ? 2 : 20 },
  topologies: { loops: 64, ttl: 10_000, warmupMs: scale(500), durationMs: scale(2_000), passes: quick ? 1 : 5, linkDelayMs: 1 },
  inProcess: { loops: 64, contenders: 16, workMs: 1, ttl: 10_000, warmupMs: scale(1_000), roundMs: scale(1_000), rounds: quick ? 2 : 10 },
  memory: { loops: 64, keys: 48, cycles: quick ? 100_000 : 1_000_000, warmupCycles: 20_000, maxMs: quick ? 10_000 : 60_000, samples: 10 },
} as const;
