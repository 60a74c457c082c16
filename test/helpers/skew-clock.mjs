/**
 * Preload for fault tests: a Node process whose wall clock is off by `CLOCK_SKEW_MS` (an NTP-skewed
 * host). Load it first: `node --import <file URL of this module> …`.
 *
 * Shifts `Date.now()`, `new Date()` and `Date()` by the skew (may be negative). Leaves everything
 * monotonic alone (`performance.now()`, `process.hrtime`, timers), as a skewed host would, and leaves
 * `new Date(x)` with an argument as it is. Without CLOCK_SKEW_MS (or with 0) it changes nothing.
 * Plain ESM, no TypeScript: it runs before any loader is registered.
 */
const raw = process.env.CLOCK_SKEW_MS ?? '';
const skew = raw === '' ? 0 : Number(raw);
if (!Number.isFinite(skew)) throw new Error(`CLOCK_SKEW_MS must be a number of milliseconds, got "${raw}"`);

if (skew !== 0) {
  const RealDate = globalThis.Date;
  const realNow = RealDate.now.bind(RealDate);
  const now = () => realNow() + skew;
  // A Proxy keeps Date.prototype, Date.UTC, Date.parse and `instanceof Date` exactly as they are.
  const SkewedDate = new Proxy(RealDate, {
    construct(target, args, newTarget) {
      return Reflect.construct(target, args.length === 0 ? [now()] : args, newTarget);
    },
    apply() {
      return new RealDate(now()).toString();
    },
    get(target, property, receiver) {
      if (property === 'now') return now;
      return Reflect.get(target, property, receiver);
    },
  });
  globalThis.Date = SkewedDate;
  Object.defineProperty(globalThis, '__clockSkewMs', { value: skew, enumerable: false });
}
