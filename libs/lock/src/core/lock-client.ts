import { EventEmitter } from 'node:events';
import {
  LockArgumentError,
  LockError,
  LockLostError,
  LockShutdownError,
  LockTimeoutError,
  LockUnavailableError,
} from '../errors/lock.errors.js';
import type { AcquireOptions, OnLockLost, UsingOptions } from '../interfaces/lock-options.interface.js';
import type { Lock } from '../interfaces/lock.interface.js';
import { messages } from '../lock.messages.js';
import { normalizeKeys, validateTtl, validateWait } from '../utils/validate.js';
import { heldInChain, lockContext } from './context.js';
import { Deadlines } from './deadlines.js';
import { LockHandle, type LockHost } from './lock.js';
import type { AcquireRequest, AcquireResult, LockStore, StoreEvent } from './store.js';
import { newToken } from './token.js';

/** Settings of the engine; the Nest module fills them from LockModuleOptions. */
export interface LockClientOptions {
  readonly store: LockStore;
  /** Close the store on `close()`. */
  readonly ownsStore?: boolean;
  readonly ttl: number;
  readonly wait: number;
  readonly autoExtend: boolean;
  readonly maxHold?: number;
  readonly onLockLost: OnLockLost;
  /** Added to the remaining wait to bound one store call (connect + answer). */
  readonly connectTimeout: number;
}

/** A lock's identity, small and serialisable (e.g. into a job's data), for `restore()`. */
export interface LockRef {
  readonly key: string;
  readonly token: string;
}

/** Events of the engine. */
export interface LockEvents {
  acquired: [{ keys: readonly string[]; token: string; fencingToken: number; waited: number }];
  released: [{ keys: readonly string[]; token: string; held: boolean }];
  lost: [{ keys: readonly string[]; token: string; error: LockLostError }];
  timeout: [{ keys: readonly string[]; waited: number }];
  requeued: [{ keys: readonly string[]; delay: number; jobId?: string }];
}

/** Safety-net retry delay of the n-th wait: 100, 200, 400, 800, 1000 … ms, with jitter. */
const backoff = (attempt: number): number => Math.min(1000, 100 * 2 ** Math.min(attempt - 1, 4)) * (0.5 + Math.random() * 0.5);
/** Upper bound on attempts of one wait (the wait's deadline ends it long before). */
const MAX_ATTEMPTS = 100_000;

/** What one acquisition knows about its token's ownership (see takeOnce). */
interface Ownership {
  kept: boolean;
  releasedFence: number;
}

/** One pending wait: notifications from the store, the timer, or shutdown wake it. */
class Waiter {
  granted?: Extract<StoreEvent, { type: 'granted' }>;
  /** Settles when the wait is over and the queue has been left. */
  done: Promise<void>;
  finish!: () => void;
  private woken = false;
  private wake?: () => void;
  private timer?: NodeJS.Timeout;
  shutdown = false;

  constructor() {
    this.done = new Promise((resolve) => (this.finish = resolve));
  }

  notify(event: StoreEvent): void {
    if (event.type === 'granted') this.granted = event;
    this.woken = true;
    this.wake?.();
  }

  stop(): void {
    this.shutdown = true;
    this.woken = true;
    this.wake?.();
  }

  /** Resolves on a notification or after `delay` ms. */
  next(delay: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.wake = () => {
        clearTimeout(this.timer);
        this.wake = undefined;
        this.woken = false;
        resolve();
      };
      this.timer = setTimeout(() => this.wake?.(), Math.max(0, delay));
      this.timer.unref();
    });
  }
}

/**
 * The framework-free engine behind LockService: acquisition with notified FIFO waiting,
 * heartbeats, re-entrancy through the async call chain, and shutdown.
 */
export class LockClient extends EventEmitter<LockEvents> implements LockHost {
  private readonly store: LockStore;
  private readonly held = new Set<LockHandle>();
  private readonly waiters = new Set<Waiter>();
  /** Acquisitions under way, so close() can let them finish before it releases and closes. */
  private readonly inflight = new Set<Promise<LockHandle>>();
  private readonly deadlines = new Deadlines();
  private closed = false;

  constructor(readonly options: LockClientOptions) {
    super();
    this.store = options.store;
  }

  /**
   * Takes the lock on `key` (or all keys, all-or-nothing), waiting up to `wait` ms.
   * @throws LockTimeoutError, LockUnavailableError, LockShutdownError, LockArgumentError
   */
  async acquire(key: string | readonly string[], options: AcquireOptions = {}): Promise<Lock> {
    const request = this.settle(key, options, 'acquire()');
    const lock = await this.take(request.keys, request.ttl, request.wait);
    if (options.autoExtend) lock.startHeartbeat(request.maxHold);
    return lock;
  }

  /** One attempt; null when the lock is busy. */
  async tryAcquire(key: string | readonly string[], options: Omit<AcquireOptions, 'wait'> = {}): Promise<Lock | null> {
    try {
      return await this.acquire(key, { ...options, wait: 0 });
    } catch (error) {
      if (error instanceof LockTimeoutError) return null;
      throw error;
    }
  }

  /**
   * Runs `fn` holding the lock, re-entrant within the call chain, heartbeat on by default,
   * and always releases. `onTimeout`, when given, handles a failed acquisition (not errors of `fn`).
   */
  async using<T>(
    key: string | readonly string[],
    options: UsingOptions,
    fn: (lock: Lock) => Promise<T> | T,
    onTimeout?: (error: LockTimeoutError) => unknown,
  ): Promise<T> {
    const request = this.settle(key, options, 'using()');
    const reentrant = heldInChain(this, request.keys);
    if (reentrant) return fn(reentrant);
    let lock: LockHandle;
    try {
      lock = await this.take(request.keys, request.ttl, request.wait);
    } catch (error) {
      if (onTimeout && error instanceof LockTimeoutError) return (await onTimeout(error)) as T;
      throw error;
    }
    if (options.autoExtend ?? this.options.autoExtend) lock.startHeartbeat(request.maxHold);
    let result: T;
    try {
      result = await lockContext.run({ owner: this, lock, parent: lockContext.getStore() }, () => fn(lock));
    } finally {
      await lock.release().catch(() => undefined);
    }
    if (lock.lostError && (options.onLockLost ?? this.options.onLockLost) === 'throw') throw lock.lostError;
    return result;
  }

  /**
   * Rebuilds a held lock from its token (taken in another process, e.g. at job dispatch).
   * @throws LockLostError when `token` does not hold `key` any more.
   */
  async restore(key: string, token: string, options: Pick<AcquireOptions, 'ttl' | 'autoExtend' | 'maxHold'> = {}): Promise<Lock> {
    const [k] = normalizeKeys(key);
    if (typeof token !== 'string' || token.length === 0) throw new LockArgumentError(messages.restoreTokenInvalid(token));
    const ttl = options.ttl === undefined ? this.options.ttl : validateTtl('restore()', options.ttl);
    this.assertOpen();
    const sentAt = Date.now();
    const state = await this.call('restore', this.store.inspect(k!, token));
    if (!state.held) throw new LockLostError([k!], 'it is not held by this token');
    const lock = this.track(new LockHandle(this, [k!], token, [state.fence], ttl, sentAt - ttl + state.pttl));
    if (options.autoExtend) lock.startHeartbeat(options.maxHold);
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
    options: Pick<AcquireOptions, 'ttl' | 'wait'>,
    dispatch: (ref: LockRef) => Promise<T> | T,
  ): Promise<T | null> {
    const request = this.settle(key, { ...options, wait: options.wait ?? 0 }, 'dispatchUnique()');
    let lock: LockHandle;
    try {
      lock = await this.take(request.keys, request.ttl, request.wait);
    } catch (error) {
      if (error instanceof LockTimeoutError) return null;
      throw error;
    }
    try {
      const result = await dispatch({ key: lock.key, token: lock.token });
      this.held.delete(lock);
      return result;
    } catch (error) {
      await lock.release().catch(() => undefined);
      throw error;
    }
  }

  async isLocked(key: string): Promise<boolean> {
    const [k] = normalizeKeys(key);
    return this.call('isLocked', this.store.isLocked(k!));
  }

  async forceRelease(key: string): Promise<boolean> {
    const [k] = normalizeKeys(key);
    return this.call('forceRelease', this.store.forceRelease(k!));
  }

  /**
   * Stops heartbeats, rejects pending waits, marks held locks lost (their `signal` aborts: the work
   * still running in them must stop), releases them, and closes the store if owned. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Waiters first, and until they have left their queues: a release below must not hand a lock
    // to a waiter of this very client that is going away. Acquisitions in flight see `closed` and
    // give back what they got. Bounded, in case the store does not answer.
    for (const waiter of this.waiters) waiter.stop();
    const settling = Promise.allSettled([...[...this.waiters].map((w) => w.done), ...this.inflight]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([settling, new Promise((resolve) => (timer = setTimeout(resolve, this.options.connectTimeout).unref()))]);
    clearTimeout(timer);
    for (const lock of this.held) lock.markLost(new LockLostError(lock.keys, 'the lock service shut down'));
    await Promise.allSettled([...this.held].map((lock) => lock.release()));
    if (this.options.ownsStore) await this.store.close();
    this.deadlines.stop();
    this.removeAllListeners();
  }

  /** @internal LockHost */
  async extendLock(lock: LockHandle, ttl: number): Promise<boolean> {
    return this.call('extend', this.store.extend(lock.keys, lock.token, ttl), ttl);
  }

  /** @internal LockHost */
  releaseLock(lock: LockHandle): Promise<boolean> {
    this.held.delete(lock);
    const released = this.call('release', this.store.release(lock.keys, lock.token));
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

  private settle(key: string | readonly string[], options: AcquireOptions, where: string) {
    const keys = normalizeKeys(key);
    const ttl = options.ttl === undefined ? this.options.ttl : validateTtl(where, options.ttl);
    const wait = options.wait === undefined ? this.options.wait : validateWait(where, options.wait);
    const maxHold = options.maxHold === undefined ? this.options.maxHold : validateTtl(`${where} maxHold`, options.maxHold);
    return { keys, ttl, wait, maxHold };
  }

  /** Runs one acquisition, tracked so that close() can wait for it. */
  private take(keys: string[], ttl: number, wait: number): Promise<LockHandle> {
    const taking = this.takeOnce(keys, ttl, wait);
    this.inflight.add(taking);
    const done = () => void this.inflight.delete(taking);
    taking.then(done, done);
    return taking;
  }

  private async takeOnce(keys: string[], ttl: number, wait: number): Promise<LockHandle> {
    this.assertOpen();
    const token = newToken();
    const start = Date.now();
    const deadline = start + wait;
    // Every attempt of this acquisition uses one token. An attempt that timed out may still take the
    // lock later: that late answer is released unless this acquisition has kept the lock, and then
    // no grant with that fencing token (or an older one) is accepted any more.
    const own: Ownership = { kept: false, releasedFence: 0 };
    // A store that does not answer fails one attempt, not the whole wait: the waiter retries until its
    // deadline and only then rejects, with the store's error if the last attempt failed too.
    let failure: LockUnavailableError | undefined;
    const attempt = async (request: AcquireRequest): Promise<AcquireResult> => {
      try {
        const result = await this.attempt(request, deadline, own);
        failure = undefined;
        return result;
      } catch (error) {
        if (!(error instanceof LockUnavailableError)) throw error;
        failure = error;
        return { acquired: false, pttl: -1 };
      }
    };
    const accept = (fences: readonly number[], from: number): LockHandle | undefined => {
      if (this.closed) {
        void this.call('release', this.store.release(keys, token)).catch(() => undefined);
        throw new LockShutdownError(messages.shutdown(keys), keys);
      }
      if (Math.max(...fences) <= own.releasedFence) return undefined;
      const lock = this.grant(keys, token, fences, ttl, from, start);
      if (lock) own.kept = true;
      return lock;
    };
    let sentAt = start;
    let result: AcquireResult = { acquired: false, pttl: -1 };
    // On a key this process already listens to (it was contended a moment ago), queue at once: one
    // round trip. Otherwise try once without queueing: an uncontended acquire stays one plain attempt.
    const hot = wait > 0 && (this.store.listening?.(keys) ?? false);
    if (!hot) {
      result = await attempt({ keys, token, ttl });
      if (result.acquired) {
        const lock = accept(result.fences, sentAt);
        if (lock) return lock;
      }
      if (wait === 0) throw failure ?? this.timeout(keys, start, result);
    }
    this.assertOpen();

    const waiter = new Waiter();
    this.waiters.add(waiter);
    const request: AcquireRequest = { keys, token, ttl, queueUntil: deadline };
    let unwatch: (() => void) | undefined;
    try {
      // Listen before queueing, so no hand-off can be missed. Without notifications (store unreachable
      // now) the timer below still retries.
      unwatch = await this.call('watch', this.store.watch(keys, token, (event) => waiter.notify(event)), deadline - Date.now()).catch(
        (error: unknown) => {
          if (error instanceof LockUnavailableError && !this.closed) return undefined;
          throw error;
        },
      );
      for (let n = 1; n <= MAX_ATTEMPTS && !waiter.shutdown; n++) {
        sentAt = Date.now();
        result = await attempt(request);
        if (result.acquired) {
          // A lock handed over before this attempt has only `remaining` ms of its ttl left.
          const lock = accept(result.fences, result.remaining === undefined ? sentAt : sentAt - ttl + result.remaining);
          if (lock) return lock;
        }
        const left = deadline - Date.now();
        if (left <= 0 && !waiter.granted) break;
        if (!waiter.granted && !waiter.shutdown) {
          const pttl = !result.acquired && result.pttl >= 0 ? result.pttl + 1 : Infinity;
          await waiter.next(Math.min(backoff(n), pttl, left));
        }
        const granted = waiter.granted;
        if (granted) {
          waiter.granted = undefined;
          const lock = accept([granted.fence], granted.grantedAt);
          if (lock) return lock;
        }
      }
      if (waiter.shutdown) throw new LockShutdownError(messages.shutdown(keys), keys);
      throw failure ?? this.timeout(keys, start, result);
    } catch (error) {
      // Leave the queue; if the lock was handed to us meanwhile, this gives it on to the next waiter.
      // With the store unreachable, do not wait for it: the entry's deadline has passed, so it is skipped anyway.
      const leaving = this.call('leave', this.store.leave(request)).catch(() => undefined);
      if (!failure) await leaving;
      throw error;
    } finally {
      unwatch?.();
      this.waiters.delete(waiter);
      waiter.finish();
    }
  }

  /** A lock for a successful attempt, or undefined (released again) when its validity already ran out. */
  private grant(keys: string[], token: string, fences: readonly number[], ttl: number, startedAt: number, waitStart: number) {
    const lock = new LockHandle(this, keys, token, fences.length === keys.length ? fences : keys.map(() => fences[0]!), ttl, startedAt);
    if (lock.validUntil <= Date.now()) {
      void this.call('release', this.store.release(keys, token)).catch(() => undefined);
      return undefined;
    }
    this.track(lock);
    if (this.listenerCount('acquired') > 0) {
      this.emit('acquired', { keys, token, fencingToken: lock.fencingToken, waited: Date.now() - waitStart });
    }
    return lock;
  }

  private track(lock: LockHandle): LockHandle {
    this.held.add(lock);
    return lock;
  }

  private timeout(keys: string[], start: number, last: AcquireResult): LockTimeoutError {
    const waited = Date.now() - start;
    this.emit('timeout', { keys, waited });
    return new LockTimeoutError(keys, waited, !last.acquired && last.pttl >= 0 ? last.pttl : undefined);
  }

  /** One acquire call, bounded; an answer that comes after we gave up is released (unless the lock was kept). */
  private attempt(request: AcquireRequest, deadline: number, own: Ownership): Promise<AcquireResult> {
    const pending = this.store.acquire(request);
    const bounded = this.call('acquire', pending, deadline - Date.now());
    bounded.catch(() =>
      pending
        .then((late) => {
          if (!late.acquired || own.kept) return undefined;
          own.releasedFence = Math.max(own.releasedFence, ...late.fences);
          return this.store.release(request.keys, request.token);
        })
        .catch(() => undefined),
    );
    return bounded;
  }

  /** Bounds a store call by `budget` + connectTimeout ms and maps store failures to LockUnavailableError. */
  private call<T>(operation: string, pending: Promise<T>, budget = 0): Promise<T> {
    const limit = Math.max(0, budget) + this.options.connectTimeout;
    return this.deadlines.bound(
      pending,
      limit,
      () => new LockUnavailableError(messages.unavailable(operation, `no answer within ${limit} ms`)),
      (error) => {
        if (error instanceof LockError) return error;
        const reason = error instanceof Error ? error.message : String(error);
        return new LockUnavailableError(messages.unavailable(operation, reason), [], { cause: error });
      },
    );
  }

  private assertOpen(): void {
    if (this.closed) throw new LockShutdownError(messages.closed());
  }
}
