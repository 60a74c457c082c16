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
import { LockHandle, drift } from './lock.js';
import type { AcquireRequest, AcquireResult, LockStore, StoreEvent } from './store/store.js';
import { noAnswer, toLockError } from './store-errors.js';
import { newToken } from './token.js';

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

/** Safety-net retry delay of the n-th wait: 100, 200, 400, 800, 1000 … ms, with jitter. */
const backoff = (attempt: number): number => Math.min(1000, 100 * 2 ** Math.min(attempt - 1, 4)) * (0.5 + Math.random() * 0.5);
/** Upper bound on attempts of one wait (the wait's deadline ends it long before). */
const MAX_ATTEMPTS = 100_000;
/** Waiters this far back in the queue (0-based) do not poll: a grant or a "you are next" message wakes them. */
const PASSIVE_RANK = 2;
/** How long, at most, giving back what a failed acquisition may hold is retried in the background, ms. */
const CLEANUP_RETRY_MS = 1000;

/** A busy answer of one attempt: when it was sent and the holder's fence it saw. */
interface Busy {
  readonly sentAt: number;
  readonly fence: number;
}

/** One pending wait: notifications from the store, the timer, or shutdown wake it. */
class Waiter {
  granted?: Extract<StoreEvent, { type: 'granted' }>;
  /** Busy answers that named the holder's fence, newest last (bounded). */
  readonly busy: Busy[] = [];
  /** Told by the store that it is now first in line. */
  promoted = false;
  /** The lock was handed to another waiter of the key: when, and for how long at most (its ttl). */
  handed?: { readonly at: number; readonly ttl: number };
  /** Settles when the wait is over and the queue has been left. */
  done: Promise<void>;
  finish!: () => void;
  shutdown = false;
  private woken = false;
  private wake?: (why: 'event' | 'timer' | 'reschedule') => void;
  private timer?: NodeJS.Timeout;

  constructor() {
    this.done = new Promise((resolve) => (this.finish = resolve));
  }

  notify(event: StoreEvent): void {
    if (event.type === 'next' || event.type === 'handed') {
      // Not a reason to try now, but to sleep differently: first in line now watches the holder's
      // expiry; further back, the new holder's expiry (it may have crashed while it waited).
      if (event.type === 'next') this.promoted = true;
      else this.handed = { at: monotonic(), ttl: event.ttl };
      this.wake?.('reschedule');
      return;
    }
    if (event.type === 'granted') this.granted = event;
    this.woken = true;
    this.wake?.('event');
  }

  stop(): void {
    this.shutdown = true;
    this.woken = true;
    this.wake?.('event');
  }

  /**
   * Resolves on a notification, a reason to sleep differently, or after `delay` ms. The timer keeps the
   * process alive, as a wait on a socket does.
   */
  next(delay: number): Promise<'event' | 'timer' | 'reschedule'> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve('event');
    }
    return new Promise((resolve) => {
      this.wake = (why) => {
        clearTimeout(this.timer);
        this.wake = undefined;
        this.woken = false;
        resolve(why);
      };
      this.timer = setTimeout(() => this.wake?.('timer'), Math.max(0, Math.ceil(delay)));
    });
  }
}

/** What one acquisition knows about its own outcome. */
interface Acquisition {
  /** Some attempt's outcome is unknown (no answer, connection lost): the store may hold the token. */
  uncertain: boolean;
  /** The acquisition ended without a lock: whatever the token still holds must be given back. */
  failed: boolean;
  /** The store said the token holds the lock (it is given back if the acquisition does not keep it). */
  holds?: boolean;
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

  constructor(
    /** The settings the engine was created with. */
    readonly options: LockClientOptions,
  ) {
    super();
    this.store = options.store;
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

  private async takeOnce(keys: string[], ttl: number, wait: number): Promise<LockHandle> {
    this.assertOpen();
    const token = newToken();
    const start = monotonic();
    // No attempt starts after `deadline`; nothing of this acquisition outlives `end`.
    const deadline = start + wait;
    const end = deadline + this.options.connectTimeout;
    const acq: Acquisition = { uncertain: false, failed: false };
    // A store that does not answer fails one attempt, not the whole wait: the waiter retries until its
    // deadline and only then rejects, with the store's error if the last attempt failed too.
    let failure: LockUnavailableError | undefined;
    const attempt = async (request: AcquireRequest): Promise<{ result: AcquireResult; sentAt: number }> => {
      const sentAt = monotonic();
      try {
        const result = await this.attempt(request, end, acq);
        failure = undefined;
        return { result, sentAt };
      } catch (error) {
        if (!(error instanceof LockUnavailableError)) throw error;
        failure = error;
        acq.uncertain = true;
        return { result: { acquired: false, pttl: -1 }, sentAt };
      }
    };
    // A lock we hold in the store, valid here until `expiresAt`. With less than half its ttl left (a
    // grant that waited long for its message, a slow answer), confirm it with one extension first.
    const accept = async (fences: readonly number[], expiresAt: number): Promise<LockHandle | undefined> => {
      // The store holds the lock for this token from here on: if we do not keep it, it must be given back.
      acq.holds = true;
      if (this.closed) throw new LockShutdownError(messages.shutdown(keys), keys);
      let until = expiresAt;
      if (until - monotonic() < ttl / 2) {
        const sentAt = monotonic();
        const ok = await this.call('extend', this.store.extend(keys, token, ttl), keys, end - sentAt).catch((error: unknown) => {
          if (error instanceof LockUnavailableError) {
            failure = error;
            acq.uncertain = true;
            return false;
          }
          throw error;
        });
        if (!ok) {
          acq.holds = false;
          return undefined;
        }
        until = sentAt + ttl - drift(ttl);
        if (this.closed) throw new LockShutdownError(messages.shutdown(keys), keys);
      }
      const lock = new LockHandle(this, keys, token, fences.length === keys.length ? fences : keys.map(() => fences[0]!), ttl, until);
      this.track(lock);
      if (this.listenerCount('acquired') > 0) {
        this.emit('acquired', { keys, token, fencingToken: lock.fencingToken, waited: Math.round(monotonic() - start) });
      }
      return lock;
    };
    // The ttl counts from when the store sent what took the lock (the store knows best), else from our send time.
    const fromResult = (result: Extract<AcquireResult, { acquired: true }>, sentAt: number) =>
      accept(
        result.fences,
        Math.max(sentAt, result.validFrom ?? sentAt) +
          (result.remaining === undefined ? ttl : Math.min(ttl, result.remaining)) -
          drift(ttl),
      );

    let result: AcquireResult = { acquired: false, pttl: -1 };
    const request: AcquireRequest = { keys, token, ttl, queueFor: Math.max(1, Math.ceil(wait)) };
    const waiter = new Waiter();
    let unwatch: (() => void) | undefined;
    let watching: Promise<unknown> | undefined;
    let finished = false;
    let queued = false;
    try {
      // On a key this process already listens to (it was contended a moment ago), queue at once: one
      // round trip. Otherwise try once without queueing: an uncontended acquire stays one plain attempt.
      const hot = wait > 0 && (this.store.listening?.(keys) ?? false);
      if (!hot) {
        const first = await attempt({ keys, token, ttl });
        result = first.result;
        if (result.acquired) {
          const lock = await fromResult(result, first.sentAt);
          if (lock) return lock;
        }
        if (wait === 0 || monotonic() >= deadline) throw failure ?? this.timeout(keys, start, result);
      }
      this.assertOpen();
      this.waiters.add(waiter);
      // Listen before queueing, so no hand-off is missed; but never let a subscription that does not
      // answer hold up the attempts (the timer below retries without notifications). A refusal (e.g. a
      // Redis user without SUBSCRIBE) is an error: no silent fallback to polling.
      let watchError: Error | undefined;
      // The stop function is taken from the store's own promise, not the bounded one: a subscription
      // that answers after this acquisition gave up is still stopped.
      const subscribing = this.store.watch
        ? this.store.watch(keys, token, (event) => waiter.notify(event))
        : Promise.resolve(() => undefined);
      subscribing.then(
        (stop) => {
          if (finished) stop();
          else unwatch = stop;
        },
        () => undefined,
      );
      watching = this.call('watch', subscribing, keys, end - monotonic()).then(
        () => undefined,
        (error: unknown) => {
          watchError = error instanceof Error ? error : new Error(String(error));
        },
      );
      await settlesWithin(watching, Math.min(Math.max(0, deadline - monotonic()), this.options.connectTimeout));
      if (watchError !== undefined && !(watchError instanceof LockUnavailableError) && !this.closed) throw watchError;
      queued = true;
      let rank: number | undefined;
      let pttl = -1;
      /** How many busy answers in a row saw the same holder, and since when (the last of them). */
      let sameHolder: { fence?: number; count: number; since: number } = { count: 1, since: monotonic() };
      for (let n = 1; n <= MAX_ATTEMPTS && !waiter.shutdown; n++) {
        const next = await attempt(request);
        result = next.result;
        if (result.acquired) {
          const lock = await fromResult(result, next.sentAt);
          if (lock) return lock;
        } else if (!failure) {
          if (result.fence !== undefined && result.fence > 0 && waiter.busy.push({ sentAt: next.sentAt, fence: result.fence }) > 8)
            waiter.busy.shift();
          if (result.fence === undefined || result.fence !== sameHolder.fence)
            sameHolder = { fence: result.fence, count: 1, since: monotonic() };
          else sameHolder = { fence: result.fence, count: sameHolder.count + 1, since: monotonic() };
          rank = result.rank;
          pttl = result.pttl;
        }
        // Sleep until a notification, the holder's expiry or the safety-net retry, then try again.
        // The first two in line retry on a timer (100 ms doubling to 1 s, never later than the holder's
        // expiry). Those further back only check at the expiry of whoever holds the lock, doubling the
        // interval while the same holder keeps extending it: their cost grows with the log of the wait,
        // not with its length.
        waiter.handed = undefined;
        for (let naps = 0; naps < 1_000 && !waiter.granted && !waiter.shutdown; naps++) {
          const left = deadline - monotonic();
          if (left <= 0) break;
          const passive = !waiter.promoted && rank !== undefined && rank >= PASSIVE_RANK;
          let delay: number;
          const handed = waiter.handed as Waiter['handed']; // set by notify() while we slept
          if (!passive) delay = Math.min(backoff(n), pttl >= 0 ? pttl + 1 : Infinity, left);
          else if (handed) delay = Math.min(handed.at + handed.ttl + 1 + Math.random() * 20 - monotonic(), left);
          else
            delay = Math.min(
              sameHolder.since + (pttl >= 0 ? pttl + 1 : 1000) * 2 ** Math.min(sameHolder.count - 1, 10) - monotonic(),
              left,
            );
          if ((await waiter.next(delay)) !== 'reschedule') break;
        }
        if (waiter.granted) {
          const lock = await this.fromGrant(waiter, accept, ttl);
          if (lock) return lock;
          continue; // stale or unconfirmed grant: the next attempt finds out at once
        }
        if (monotonic() >= deadline || waiter.shutdown) break;
      }
      if (waiter.shutdown || this.closed) throw new LockShutdownError(messages.shutdown(keys), keys);
      throw failure ?? this.timeout(keys, start, result);
    } catch (error) {
      acq.failed = true;
      // Leave the queue and give back whatever this token may hold (a grant that raced with giving
      // up, an attempt whose answer was lost). Awaited when the store answers, so that no key of this
      // token is left once we reject; retried in the background when it does not.
      if (queued || acq.uncertain || acq.holds) await this.giveBack(request, end, ttl);
      throw error;
    } finally {
      finished = true;
      unwatch?.();
      this.waiters.delete(waiter);
      waiter.finish();
    }
  }

  /**
   * A grant from a notification. Fencing tokens of a key only grow, so the grant ran after every busy
   * attempt that saw a holder with a lower fence, and before any that saw one at or above it (then it
   * is stale: that lock was ours once and is gone). Its validity counts from the newest busy attempt's
   * send time. Without such an attempt the next attempt finds out (it answers "yours" with the ttl left).
   */
  private async fromGrant(
    waiter: Waiter,
    accept: (fences: readonly number[], expiresAt: number) => Promise<LockHandle | undefined>,
    ttl: number,
  ): Promise<LockHandle | undefined> {
    const granted = waiter.granted!;
    waiter.granted = undefined;
    const seen = waiter.busy;
    if (seen.length === 0 || seen.some((b) => b.fence >= granted.fence)) return undefined;
    return accept([granted.fence], seen[seen.length - 1]!.sentAt + ttl - drift(ttl));
  }

  /** Gives back what a failed acquisition's token may hold; bounded here, then retried in the background. */
  private async giveBack(request: AcquireRequest, end: number, ttl: number): Promise<void> {
    const first = this.call('leave', this.store.leave(request), request.keys, Math.max(50, end - monotonic()));
    const ok = await first.then(
      () => true,
      () => false,
    );
    if (ok || this.closed) return;
    // The store did not answer: keep trying for a while (the lock expires after its ttl anyway).
    const until = monotonic() + Math.min(ttl, CLEANUP_RETRY_MS * 10);
    const retry = (async () => {
      for (let n = 1; n <= 20 && monotonic() < until && !this.closed; n++) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(CLEANUP_RETRY_MS, 50 * 2 ** n)).unref());
        const done = await this.call('leave', this.store.leave(request), request.keys, this.options.connectTimeout).then(
          () => true,
          () => false,
        );
        if (done) return;
      }
    })();
    this.cleanups.add(retry);
    void retry.finally(() => this.cleanups.delete(retry));
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

  /**
   * One acquire call, bounded by the acquisition's end. An answer that comes after we gave up is
   * given back if the acquisition failed (while it runs, its next attempt finds the lock its own).
   */
  private attempt(request: AcquireRequest, end: number, acq: Acquisition): Promise<AcquireResult> {
    const pending = this.store.acquire(request);
    const bounded = this.call('acquire', pending, request.keys, end - monotonic());
    bounded.catch(() =>
      pending
        .then((late) => {
          if (late.acquired && acq.failed) return this.store.leave(request);
          return undefined;
        })
        .catch(() => undefined),
    );
    return bounded;
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
