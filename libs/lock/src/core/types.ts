/** A held lock. Obtained from `LockService.acquire()`, `using()`, `restore()` or `currentLock()`. */
export interface Lock {
  /** The keys this lock holds (as given, without prefix; under a tenant, namespaced: `@<tenant>/<key>`). */
  readonly keys: readonly string[];
  /** The first (or only) key. */
  readonly key: string;
  /** The owner id stored in Redis: 128 random bits, base64url. Pass it to `restore()` to release elsewhere. */
  readonly token: string;
  /**
   * A number that strictly increases for each new holder of the key, also across expiries. Send it along
   * with writes so the resource can reject a stale holder (a write with a lower token than one already seen).
   */
  readonly fencingToken: number;
  /** One fencing token per key, in the order of `keys`. */
  readonly fencingTokens: readonly number[];
  /** Aborted (reason: a `LockLostError`) as soon as the lock is known to be lost. */
  readonly signal: AbortSignal;
  /** Epoch ms until which the lock is known to be valid (ttl minus the acquire round trip and clock drift). */
  readonly validUntil: number;
  /** True until it is released or known to be lost. */
  readonly isHeld: boolean;
  /**
   * Extend the lock to `ttl` ms from now (default: its ttl).
   * @throws LockLostError if it is no longer held by this owner.
   */
  extend(ttl?: number): Promise<void>;
  /**
   * Release the lock, only if this owner still holds it. Resolves false when it was no longer ours.
   * Waiters are woken at once. Idempotent.
   */
  release(): Promise<boolean>;
}

/** What to do when a lock taken by `@WithLock` or `using()` is lost while the work still runs. */
export type OnLockLost = 'continue' | 'throw';

/** Options of one acquisition. */
export interface AcquireOptions {
  /** Time to live in ms; default from the module. */
  ttl?: number;
  /** Time to wait in ms; default from the module. 0 = one attempt. */
  wait?: number;
  /** Extend the lock every ttl/3 until it is released. Default false for `acquire()`, the module's `autoExtend` for `using()`. */
  autoExtend?: boolean;
  /** Longest time the heartbeat may keep the lock. */
  maxHold?: number;
  /**
   * The tenant whose key this is (the key is namespaced under it; see docs/tenancy.md), overriding the
   * module's tenant resolver; `null`: no tenant (the plain key). Needs LockModule's `tenant` option.
   */
  tenant?: string | null;
  /**
   * A name for this kind of lock in events, diagnostics channels, metrics and log lines (e.g.
   * `'PaymentsService.capture'`): a string of 1 to 200 characters. Keep it bounded — a method or
   * operation name, never the key itself (`account:42`), or metric label sets grow with every key.
   * `@WithLock` and `@RouteLock` pass `Class.method`. Default: none.
   */
  label?: string;
}

/** Options of `using()` and `@WithLock`. */
export interface UsingOptions extends AcquireOptions {
  /** See {@link LockModuleOptions.onLockLost}. */
  onLockLost?: OnLockLost;
}
