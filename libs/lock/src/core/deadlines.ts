import { monotonic } from './clock.js';

/**
 * Bounds many store calls with one interval timer instead of a timer per call (arming and clearing
 * a timer on every acquire and release was measurable in an uncontended loop). Deadlines fire up to
 * `tick` ms late (10 ms). The interval runs only while a call is pending and never keeps the process alive.
 * @internal
 */
export class Deadlines {
  private readonly pending = new Set<{ at: number; readonly expire: () => void }>();
  private timer?: NodeJS.Timeout;

  constructor(private readonly tick = 10) {}

  /** Settles like `pending` (errors passed through `mapError`), or rejects with `onExpiry()` after `limit` ms. */
  bound<T>(pending: Promise<T>, limit: number, onExpiry: () => Error, mapError: (error: unknown) => unknown = (e) => e): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry = { at: monotonic() + limit, expire: () => reject(onExpiry()) };
      this.pending.add(entry);
      if (!this.timer) {
        this.timer = setInterval(() => this.sweep(), this.tick);
        this.timer.unref();
      }
      pending.then(
        (value) => {
          this.pending.delete(entry);
          resolve(value);
        },
        (error: unknown) => {
          this.pending.delete(entry);
          reject(mapError(error));
        },
      );
    });
  }

  /** Brings every pending deadline forward to `at` (monotonic ms) at the latest. */
  cap(at: number): void {
    for (const entry of this.pending) entry.at = Math.min(entry.at, at);
  }

  /** Stops the timer; pending calls are left to settle by themselves. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private sweep(): void {
    const now = monotonic();
    for (const entry of this.pending) {
      if (entry.at <= now) {
        this.pending.delete(entry);
        entry.expire();
      }
    }
    if (this.pending.size === 0) this.stop();
  }
}

/**
 * Whether `pending` settles (either way) within `ms`; never rejects, and its timer never keeps the
 * process alive. The one "wait, but not forever" of the engine: close(), QUIT, the connection probe.
 * @internal
 */
export async function settlesWithin(pending: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
    timer.unref();
  });
  try {
    return await Promise.race([
      pending.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
