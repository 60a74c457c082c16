import type { OnLockLost } from './lock-options.interface.js';

/** Builds the lock key(s) of a call from the method's arguments; `this` is the instance. */
export type LockKeyFn<A extends unknown[] = any[]> = (...args: A) => string | string[];

/** What `@WithLock` does when the lock cannot be had within `wait`. */
export type OnLockTimeout<A extends unknown[] = any[]> =
  | 'throw'
  | 'requeue'
  | ((error: import('../errors/lock.errors.js').LockTimeoutError, ...args: A) => unknown);

/**
 * Fourth argument of `@WithLock`. Checked when the decorator is applied: any other name is refused
 * (with the closest known name suggested), as is a value of the wrong type or out of bounds.
 */
export interface WithLockOptions<A extends unknown[] = any[]> {
  /**
   * `'throw'` (default): reject with LockTimeoutError. `'requeue'`: for a BullMQ `process(job, token)`,
   * move the job back to delayed for `requeueDelay` ms without counting a failed attempt.
   * A function: its result is returned instead.
   */
  onTimeout?: OnLockTimeout<A>;
  /** Delay before a requeued job runs again, ms: 0 to 2^31-1 (rounded up). Default 1000. */
  requeueDelay?: number;
  /** Overrides the module's `onLockLost`: `'continue'` or `'throw'`. */
  onLockLost?: OnLockLost;
  /** Overrides the module's `autoExtend`: `true` or `false` (nothing else). */
  autoExtend?: boolean;
  /** Longest time the heartbeat may keep the lock, ms: 10 to 2^31-1 (rounded up). */
  maxHold?: number;
}
