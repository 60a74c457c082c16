import { performance } from 'node:perf_hooks';

/**
 * This process's monotonic clock, in ms. Every validity and deadline of the engine is measured on it:
 * it does not jump when NTP or an operator sets the wall clock, and it is never compared with
 * another process's clock. `Date.now()` is used only to show a moment to users (`validUntil`).
 * @internal
 */
export const monotonic = (): number => performance.now();
