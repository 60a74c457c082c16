/**
 * One clock for every benchmark process: `process.hrtime.bigint()` is CLOCK_MONOTONIC on Linux,
 * which all processes of the machine share, with sub-microsecond resolution (Date.now() has 1 ms).
 * The parent passes its start as BENCH_CLOCK_BASE so every process reports ms on the same axis.
 */
const BASE = process.env.BENCH_CLOCK_BASE ? BigInt(process.env.BENCH_CLOCK_BASE) : process.hrtime.bigint();

/** Milliseconds (fractional) since the parent's start, comparable across processes of this machine. */
export function now(): number {
  return Number(process.hrtime.bigint() - BASE) / 1e6;
}

/** The value to pass to children as BENCH_CLOCK_BASE. */
export function clockBase(): string {
  return BASE.toString();
}
