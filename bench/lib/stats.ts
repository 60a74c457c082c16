/** Small statistics helpers for the benchmark. */

/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(values: number[]): Summary {
  const sorted = Float64Array.from(values).sort();
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
  };
}

/** Jain's fairness index: 1 when every contender got the same share, 1/n when one got everything. */
export function jain(counts: number[]): number {
  const sum = counts.reduce((a, b) => a + b, 0);
  const squares = counts.reduce((a, b) => a + b * b, 0);
  return squares === 0 ? Number.NaN : (sum * sum) / (counts.length * squares);
}

/** The middle value; the mean of the two middle ones for an even count (20 rounds, a dropped pass). */
export function median(values: number[]): number {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  return n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
}

/** A ratio taken within each pass (both sides ran seconds apart): its median and range. */
export interface PassRatio {
  median: number;
  min: number;
  max: number;
}

/** `a[i] ÷ b[i]` for every pass both have; median and range (NaN when none). */
export function passRatio(a: readonly (number | undefined)[], b: readonly (number | undefined)[]): PassRatio {
  const ratios = a.flatMap((x, i) => (x !== undefined && b[i] !== undefined ? [x / b[i]!] : []));
  return ratios.length
    ? { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) }
    : { median: NaN, min: NaN, max: NaN };
}
