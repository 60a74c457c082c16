import { EventEmitter } from 'node:events';
import { LockLostError, LockShutdownError, LockTimeoutError, LockUnavailableError } from './errors.js';
import type { AcquireOptions, OnLockLost, UsingOptions } from './types.js';
import type { Lock } from './types.js';
import { messages } from './messages.js';
import {
  ACQUIRE_OPTIONS,
  DISPATCH_UNIQUE_OPTIONS,
  RESTORE_OPTIONS,
  TRY_ACQUIRE_OPTIONS,
  USING_OPTIONS,
  normalizeKeys,
  validateFunction,
  validateLockOptions,
  validateToken,
} from './validate.js';
import { monotonic } from './clock.js';
import { heldInChain, lockContext } from './context.js';
import { Deadlines, settlesWithin } from './deadlines.js';
import { Acquisition, type AcquisitionHost, type Waiter } from './acquisition.js';
import { LockHandle, drift } from './lock.js';
import type { AcquireResult, LockStore } from './store/store.js';
import { noAnswer, toLockError } from './store-errors.js';

/** Settings of the engine; the Nest module fills them from LockModuleOptions. */
export interface LockClientOptions {
  /** The backend the locks live in. */
  readonly store: LockStore;
  /** Close the store on `close()`. */
  readonly ownsStore?: boolean;
  /** Default time to live of a lock, ms. */
  readonly ttl: number;
  /** Default time to wait for a busy lock, ms; 0 = one attempt. */
  readonly wait: number;
  /** Default of `using()`'s `autoExtend` (a heartbeat while `fn` runs); `acquire()` never defaults to it. */
  readonly autoExtend: boolean;
  /** Default bound on how long a heartbeat may keep one lock, ms (unbounded when unset). */
  readonly maxHold?: number;
  /** Default of `using()`'s `onLockLost`. */
  readonly onLockLost: OnLockLost;
  /** Added once to the wait: an acquisition never takes longer than wait + connectTimeout. Also bounds close(). */
  readonly connectTimeout: number;
}

/** A lock's identity, small and serialisable (e.g. into a job's data), for `restore()`. */
export interface LockRef {
  /** The lock key, as the caller gave it. */
  readonly key: string;
  /** The owner id the lock is held under; pass it to `restore()`. */
  readonly token: string;
}

/** Events of the engine: each name with the arguments of its listeners. */
export interface LockEvents {
  /** A lock was taken. */
  acquired: [
    {
      /** The lock keys. */
      keys: readonly string[];
      /** The owner id of the new lock. */
      token: string;
      /** The fencing token of its first key. */
      fencingToken: number;
      /** How long the acquisition took, ms. */
      waited: number;
    },
  ];
  /** A release was answered. */
  released: [
    {
      /** The lock keys. */
      keys: readonly string[];
      /** The owner id of the released lock. */
      token: string;
      /** Whether the lock was still ours when released (false: it had expired or passed to another owner). */
      held: boolean;
    },
  ];
  /** A held lock was found lost (expired, force-released, taken over, or given up on shutdown). */
  lost: [
    {
      /** The lock keys. */
      keys: readonly string[];
      /** The owner id of the lost lock. */
      token: string;
      /** Why it was lost. */
      error: LockLostError;
    },
  ];
  /** An acquisition gave up after its wait. */
  timeout: [
    {
      /** The lock keys. */
      keys: readonly string[];
      /** How long it waited, ms. */
      waited: number;
    },
  ];
  /** A `@WithLock` BullMQ job was moved back to delayed because its lock was busy (`onTimeout: 'requeue'`). */
  requeued: [
    {
      /** The lock keys. */
      keys: readonly string[];
      /** The delay before the job runs again, ms. */
      delay: number;
      /** The job's id, when it has one. */
      jobId?: string;
    },
  ];
}

/**
 * The framework-free engine behind LockService: acquisition with notified FIFO waiting,
 * heartbeats, re-entrancy through the async call chain, and shutdown.
 */
// It is the LockHost of its LockHandles (extendLock, releaseLock, lockLost): `new LockHandle(this, ...)`
// checks that at compile time. No `implements LockHost` here, so the public type does not name that
// internal interface.
export class LockClient extends EventEmitter<LockEvents> {
  private readonly store: LockStore;
  private readonly held = new Set<LockHandle>();
  private readonly waiters = new Set<Waiter>();
  /** Acquisitions under way, so close() can let them finish before it releases and closes. */
  private readonly inflight = new Set<Promise<LockHandle>>();
  /** Give-backs of failed acquisitions still being retried. */
  private readonly cleanups = new Set<Promise<unknown>>();
  private readonly deadlines = new Deadlines();
  private closed = false;
  /** What an acquisition (core/acquisition.ts) needs of this engine. */
  private readonly host: AcquisitionHost;

  constructor(
    /** The settings the engine was created with. */
    readonly options: LockClientOptions,
  ) {
    super();
    this.store = options.store;
    this.host = {
      store: this.options.store,
      connectTimeout: this.options.connectTimeout,
      waiters: this.waiters,
      cleanups: this.cleanups,
      isClosed: () => this.closed,
      call: (operation, pending, keys, limit) => this.call(operation, pending, keys, limit),
      hold: (keys, token, fences, ttl, validUntil, start) => {
        const lock = this.track(new LockHandle(this, keys, token, fences, ttl, validUntil));
        if (this.listenerCount('acquired') > 0) {
          this.emit('acquired', { keys, token, fencingToken: lock.fencingToken, waited: Math.round(monotonic() - start) });
        }
        return lock;
      },
      timeout: (keys, start, last) => this.timeout(keys, start, last),
    };
  }

  /**
   * Takes the lock on `key` (or all keys, all-or-nothing), waiting up to `wait` ms.
   * @throws LockTimeoutError, LockUnavailableError, LockStoreError, LockShutdownError, LockArgumentError
   */
  async acquire(key: string | readonly string[], options?: AcquireOptions): Promise<Lock> {
    const request = this.settle(key, options, 'acquire()', ACQUIRE_OPTIONS);
    const lock = await this.take(request.keys, request.ttl, request.wait);
    if (request.autoExtend) lock.startHeartbeat(request.maxHold);
    return lock;
  }

  /** One attempt; null when the lock is busy. */
  async tryAcquire(key: string | readonly string[], options?: Omit<AcquireOptions, 'wait'>): Promise<Lock | null> {
    const request = this.settle(key, options, 'tryAcquire()', TRY_ACQUIRE_OPTIONS);
    let lock: LockHandle;
    try {
      lock = await this.take(request.keys, request.ttl, 0);
    } catch (error) {
      if (error instanceof LockTimeoutError) return null;
      throw error;
    }
    if (request.autoExtend) lock.startHeartbeat(request.maxHold);
    return lock;
  }

  /**
   * Runs `fn` holding the lock, re-entrant within the call chain, heartbeat on by default,
   * and always releases. `onTimeout`, when given, handles a failed acquisition (not errors of `fn`).
   */
  async using<T>(
    key: string | readonly string[],
    options: UsingOptions | undefined,
    fn: (lock: Lock) => Promise<T> | T,
    onTimeout?: (error: LockTimeoutError) => unknown,
  ): Promise<T> {
    const request = this.settle(key, options, 'using()', USING_OPTIONS);
    validateFunction('using()', 'fn', fn);
    const reentrant = heldInChain(this, request.keys);
    if (reentrant) return fn(reentrant);
    let lock: LockHandle;
    try {
      lock = await this.take(request.keys, request.ttl, request.wait);
    } catch (error) {
      if (onTimeout && error instanceof LockTimeoutError) return (await onTimeout(error)) as T;
      throw error;
    }
    if (request.autoExtend ?? this.options.autoExtend) lock.startHeartbeat(request.maxHold);
    let result: T;
    try {
      result = await lockContext.run({ owner: this, lock, parent: lockContext.getStore() }, () => fn(lock));
    } finally {
      await lock.release().catch(() => undefined);
    }
    // Lost while the work ran, whoever noticed: the heartbeat, the local validity, or the release.
    if (lock.lostError && (request.onLockLost ?? this.options.onLockLost) === 'throw') throw lock.lostError;
    return result;
  }

  /**
   * Rebuilds a held lock from its token (taken in another process, e.g. at job dispatch). Its validity
   * is what Redis says is left of its ttl, counted from when this call was sent.
   * @throws LockLostError when `token` does not hold `key` any more.
   */
  async restore(key: string, token: string, options?: Pick<AcquireOptions, 'ttl' | 'autoExtend' | 'maxHold'>): Promise<Lock> {
    const [k] = normalizeKeys(key);
    validateToken('restore()', token);
    const checked = validateLockOptions('restore()', options, RESTORE_OPTIONS);
    const ttl = checked.ttl ?? this.options.ttl;
    this.assertOpen();
    const sentAt = monotonic();
    const state = await this.call('restore', this.store.inspect(k!, token), [k!], this.options.connectTimeout);
    if (!state.held) throw new LockLostError([k!], 'it is not held by this token');
    const lock = this.track(new LockHandle(this, [k!], token, [state.fence], ttl, sentAt + state.pttl - drift(ttl)));
    if (checked.autoExtend) lock.startHeartbeat(checked.maxHold ?? this.options.maxHold);
    return lock;
  }

  /**
   * Lock at dispatch, release in the worker (Laravel's ShouldBeUnique): takes the lock (one attempt
   * unless `wait` is given), then calls `dispatch` with a serialisable {@link LockRef} to put in the
   * job's data. Resolves null, without calling `dispatch`, when the key is already locked. From then on
   * the lock belongs to the job: this process neither extends nor releases it (also not on shutdown);
   * the worker calls `restore(ref.key, ref.token)` and releases it, or it expires after `ttl`.
   * If `dispatch` throws, the lock is released and the error passes through.
   */
  async dispatchUnique<T>(
    key: string,
    options: Pick<AcquireOptions, 'ttl' | 'wait'> | undefined,
    dispatch: (ref: LockRef) => Promise<T> | T,
  ): Promise<T | null> {
    const request = this.settle(key, options, 'dispatchUnique()', DISPATCH_UNIQUE_OPTIONS);
    validateFunction('dispatchUnique()', 'dispatch', dispatch);
    let lock: LockHandle;
    try {
      lock = await this.take(request.keys, request.ttl, options?.wait === undefined ? 0 : request.wait);
    } catch (error) {
      if (error instanceof LockTimeoutError) return null;
      throw error;
    }
    try {
      const result = await dispatch({ key: lock.key, token: lock.token });
      this.held.delete(lock);
      lock.detach();
      return result;
    } catch (error) {
      await lock.release().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Whether anyone holds `key` now (this process or another).
   * @throws LockUnavailableError, LockStoreError, LockShutdownError, LockArgumentError
   */
  async isLocked(key: string): Promise<boolean> {
    const keys = normalizeKeys(key);
    this.assertOpen();
    return this.call('isLocked', this.store.isLocked(keys[0]!), keys, this.options.connectTimeout);
  }

  /**
   * Deletes the lock on `key` whoever holds it (an operator's escape hatch) and hands it to the next
   * waiter. True if it was held.
   * @throws LockUnavailableError, LockStoreError, LockShutdownError, LockArgumentError
   */
  async forceRelease(key: string): Promise<boolean> {
    const keys = normalizeKeys(key);
    this.assertOpen();
    return this.call('forceRelease', this.store.forceRelease(keys[0]!), keys, this.options.connectTimeout);
  }

  /**
   * Asks the store to check that it may run everything it needs (a Redis user's permissions),
   * within connectTimeout. A store without such a check passes.
   * @throws LockStoreError for a definite refusal, LockUnavailableError when the store did not answer.
   */
  async checkStore(): Promise<void> {
    if (!this.store.check) return;
    const ms = this.options.connectTimeout;
    await this.call('check', this.store.check(ms), [], ms + 50);
  }

  /**
   * Stops heartbeats, rejects pending waits, marks held locks lost (their `signal` aborts: the work
   * still running in them must stop), releases them, and closes the store if owned. Idempotent.
   * Finishes within about connectTimeout + 50 ms, also when the store does not answer.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const end = monotonic() + this.options.connectTimeout;
    const left = () => Math.max(1, end - monotonic());
    // Every store call in flight (attempts, give-backs, releases) answers by then at the latest.
    this.deadlines.cap(end);
    // Waiters first, and until they have left their queues: a release below must not hand a lock
    // to a waiter of this very client that is going away. Acquisitions in flight see `closed` and
    // give back what they got.
    for (const waiter of this.waiters) waiter.stop();
    await settlesWithin(Promise.allSettled([...[...this.waiters].map((w) => w.done), ...this.inflight]), left());
    for (const lock of this.held) lock.markLost(new LockLostError(lock.keys, 'the lock service shut down'));
    await settlesWithin(Promise.allSettled([...this.held].map((lock) => lock.release())), left());
    await settlesWithin(Promise.allSettled([...this.cleanups]), left());
    if (this.options.ownsStore) await settlesWithin(this.store.close(left()), left() + 50);
    // The deadline sweep stays until the last bounded call has settled (it stops by itself, and never
    // keeps the process alive): calls close() stopped waiting for keep their bounds.
    this.removeAllListeners();
  }

  /** @internal LockHost */
  extendLock(lock: LockHandle, ttl: number, budget: number): Promise<boolean> {
    return this.call('extend', this.store.extend(lock.keys, lock.token, ttl), lock.keys, Math.max(0, budget) + this.options.connectTimeout);
  }

  /** @internal LockHost */
  releaseLock(lock: LockHandle): Promise<boolean> {
    this.held.delete(lock);
    // Gone or taken after a reconnect: an earlier run of this release (whose reply was lost, and which
    // ioredis re-sent) freed it if the answer came while the lock was still valid: it cannot have
    // expired yet, and nobody else could have freed it but an operator's forceRelease.
    const released = this.call('release', this.store.release(lock.keys, lock.token), lock.keys, this.options.connectTimeout).then(
      (outcome) => outcome === 'released' || (outcome === 'unsure' && lock.remaining() > 0),
    );
    if (this.listenerCount('released') === 0) return released;
    return released.then((ok) => {
      this.emit('released', { keys: lock.keys, token: lock.token, held: ok });
      return ok;
    });
  }

  /** @internal LockHost */
  lockLost(lock: LockHandle, error: LockLostError): void {
    this.emit('lost', { keys: lock.keys, token: lock.token, error });
  }

  private settle(key: string | readonly string[], options: unknown, where: string, known: readonly string[]) {
    const keys = normalizeKeys(key);
    const checked = validateLockOptions(where, options, known);
    return {
      keys,
      ttl: checked.ttl ?? this.options.ttl,
      wait: checked.wait ?? this.options.wait,
      maxHold: checked.maxHold ?? this.options.maxHold,
      autoExtend: checked.autoExtend,
      onLockLost: checked.onLockLost,
    };
  }

  /** Runs one acquisition, tracked so that close() can wait for it. */
  private take(keys: string[], ttl: number, wait: number): Promise<LockHandle> {
    const taking = this.takeOnce(keys, ttl, wait);
    this.inflight.add(taking);
    const done = () => void this.inflight.delete(taking);
    taking.then(done, done);
    return taking;
  }

  private takeOnce(keys: string[], ttl: number, wait: number): Promise<LockHandle> {
    this.assertOpen();
    return new Acquisition(this.host, keys, ttl, wait).run();
  }

  private track(lock: LockHandle): LockHandle {
    this.held.add(lock);
    return lock;
  }

  private timeout(keys: string[], start: number, last: AcquireResult): LockTimeoutError {
    const waited = Math.round(monotonic() - start);
    this.emit('timeout', { keys, waited });
    return new LockTimeoutError(keys, waited, !last.acquired && last.pttl >= 0 ? last.pttl : undefined);
  }

  /** Bounds a store call by `limit` ms and maps its failures to LockErrors (permanent or transient). */
  private call<T>(operation: string, pending: Promise<T>, keys: readonly string[], limit: number): Promise<T> {
    const ms = Math.max(1, Math.ceil(limit));
    return this.deadlines.bound(
      pending,
      ms,
      () => {
        this.store.suspect?.();
        const error = noAnswer(operation, ms, this.store.lastError?.());
        return keys.length > 0 ? new LockUnavailableError(error.message, keys, { cause: error.cause }) : error;
      },
      (error) => toLockError(operation, error, keys, this.store.lastError?.()),
    );
  }

  private assertOpen(): void {
    if (this.closed) throw new LockShutdownError(messages.closed());
  }
}
