import { EventEmitter } from 'node:events';
import { LockLostError, LockShutdownError, LockStoreError, LockTimeoutError, LockUnavailableError } from './errors.js';
import type { AcquireOptions, OnLockLost, UsingOptions } from './types.js';
import type { Lock } from './types.js';
import { messages } from './messages.js';
import {
  ACQUIRE_OPTIONS,
  DISPATCH_UNIQUE_OPTIONS,
  KEY_ONLY_OPTIONS,
  RESTORE_OPTIONS,
  TRY_ACQUIRE_OPTIONS,
  USING_OPTIONS,
  normalizeKeys,
  validateFunction,
  validateLockOptions,
  validateOptions,
  validateToken,
} from './validate.js';
import { Tenancy, type TenancyOptions, type TenantResolver } from './tenancy.js';
import { LockArgumentError } from './errors.js';
import { monotonic } from './clock.js';
import { heldInChain, lockContext } from './context.js';
import { Deadlines, settlesWithin } from './deadlines.js';
import { Acquisition, type AcquisitionHost, type Waiter } from './acquisition.js';
import { lockChannels, type LockEventName } from './channels.js';
import { LockHandle, drift } from './lock.js';
import type { AcquireResult, LockStore, StoreHealth } from './store/store.js';
import { errorText } from './store/health.js';
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
  /**
   * An acquisition that waited longer than this (ms) is reported to `warn`, and so is a timeout of an
   * acquisition that waited (`wait` > 0). 0 or unset: neither is reported.
   */
  readonly slowWaitMs?: number;
  /** Where slow waits and timeouts are reported (the Nest module passes its Logger's `warn`). Unset: nowhere. */
  readonly warn?: (message: string) => void;
  /**
   * Tenancy (see docs/tenancy.md): a resolver of the current tenant, or {@link TenancyOptions}. Keys of a
   * call with a tenant are namespaced under it. Unset: off (a call's `tenant` option is refused).
   */
  readonly tenant?: TenantResolver | TenancyOptions;
}

/** A lock's identity, small and serialisable (e.g. into a job's data), for `restore()`. */
export interface LockRef {
  /** The lock key, as the caller gave it. */
  readonly key: string;
  /** The owner id the lock is held under; pass it to `restore()`. */
  readonly token: string;
  /**
   * The tenant the key is namespaced under: pass it to `restore()` as its `tenant` option. `null` when
   * tenancy is on and the lock has no tenant (so a worker restoring it inside a tenant's context still
   * finds the plain key); absent when tenancy is off.
   */
  readonly tenant?: string | null;
}

/**
 * Events of the engine: each name with the arguments of its listeners (one payload object). Listen with
 * `LockService.on()` / `LockClient.on()`, or subscribe to the `node:diagnostics_channel` channel of the
 * event ({@link LOCK_CHANNELS}: `nestjs-redis-lock:<event>`), which gets the same payload.
 *
 * Every acquisition (`acquire()`, `tryAcquire()`, `using()`, `@WithLock`, `@RouteLock`; not a re-entrant
 * `using()`, which takes nothing) starts with `acquiring` and ends with exactly one of `acquired`,
 * `timeout` or `failed`, all with the same `token`: waiters waiting = acquiring - (acquired + timeout +
 * failed). A lock taken ends with `released` or `lost` (or both: lost first, released when the work ends).
 *
 * `label` is the acquisition's `label` option (`@WithLock`/`@RouteLock`: `Class.method` by default):
 * bounded, so it is what metrics should be labelled by, never the keys.
 */
export interface LockEvents {
  /** An acquisition starts (before its first attempt). */
  acquiring: [
    {
      /** The lock keys. */
      keys: readonly string[];
      /** The owner id this acquisition will hold the lock under (the same in its `acquired`, `timeout` or `failed`). */
      token: string;
      /** The acquisition's label, if it has one. */
      label?: string;
      /** How long it may wait for a busy lock, ms (0: one attempt). */
      wait: number;
    },
  ];
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
      /** The acquisition's label, if it has one. */
      label?: string;
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
      /** How long the lock was held, ms: from when it was taken (or restored) to the release call. */
      heldFor: number;
      /** The acquisition's label, if it has one. */
      label?: string;
    },
  ];
  /** A lock was extended: by its heartbeat, or by `lock.extend()`. */
  extended: [
    {
      /** The lock keys. */
      keys: readonly string[];
      /** The owner id of the lock. */
      token: string;
      /** The new time to live, ms from when the extension was sent. */
      ttl: number;
      /** The acquisition's label, if it has one. */
      label?: string;
      /** True for the heartbeat's extensions, false for a call of `lock.extend()`. */
      heartbeat: boolean;
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
      /** The acquisition's label, if it has one. */
      label?: string;
    },
  ];
  /** An acquisition gave up after its wait (for `tryAcquire()`, one attempt: the lock was busy). */
  timeout: [
    {
      /** The lock keys. */
      keys: readonly string[];
      /** The owner id the acquisition would have held the lock under. */
      token: string;
      /** How long it waited, ms. */
      waited: number;
      /** The acquisition's label, if it has one. */
      label?: string;
    },
  ];
  /**
   * An acquisition ended with an error that is not a timeout: the store did not answer or refused
   * (`LockUnavailableError`, `LockStoreError`), the service shut down (`LockShutdownError`), ...
   */
  failed: [
    {
      /** The lock keys. */
      keys: readonly string[];
      /** The owner id the acquisition would have held the lock under. */
      token: string;
      /** The acquisition's label, if it has one. */
      label?: string;
      /** The error the caller gets. */
      error: Error;
    },
  ];
  /**
   * An idempotent call (`@Idempotent`, `IdempotencyService.run`) ended: `ran` (the work ran and its
   * result was stored), `replayed` (a stored result was returned without running), `error-stored` (the
   * work threw an error chosen to be stored), `failed` (the work threw; nothing stored), `in-flight` (a
   * duplicate gave up on the first call still running), `not-stored` (the result could not be stored:
   * not serialisable, or the call's lease was lost first).
   */
  idempotent: [
    {
      /** The idempotency key (as given). */
      key: string;
      /** The call's label (the decorated method, or the caller's `label`), for bounded metric labels. */
      label?: string;
      /** How the call ended (see the event's description above). */
      outcome: 'ran' | 'replayed' | 'error-stored' | 'failed' | 'in-flight' | 'not-stored';
      /** How long the call took, ms (waiting included). */
      duration: number;
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
      /** The decorated method's label (`@WithLock`'s `label`, by default `Class.method`). */
      label?: string;
    },
  ];
}

/** Compile-time check: every event has a diagnostics channel, and every channel an event. */
type SameNames<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const everyEventHasAChannel: SameNames<keyof LockEvents, LockEventName> = true;
void everyEventHasAChannel;

/** The key a store without a health check of its own is asked `isLocked` about (read only). */
const HEALTH_PROBE_KEY = 'nestjs-redis-lock:health';

/** Locks held and acquisitions under way in one process, from {@link LockClient.stats}. */
export interface LockStats {
  /** Locks this process holds now (taken and neither released nor known to be lost). */
  readonly held: number;
  /** Acquisitions under way (waiting for a busy lock, or their attempt on its way). */
  readonly acquiring: number;
}

/**
 * The framework-free engine behind LockService: acquisition with notified FIFO waiting,
 * heartbeats, re-entrancy through the async call chain, and shutdown.
 */
// It is the LockHost of its LockHandles (extendLock, releaseLock, lockLost, lockExtended): `new LockHandle(this, ...)`
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
  /** Waits longer than this are reported to `options.warn` (Infinity: off). */
  private readonly slowWait: number;
  /** Tenant namespacing, when the `tenant` option is set. */
  private readonly tenancy?: Tenancy;

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
      hold: (acquisition, fences, validUntil) => {
        const { keys, token, label } = acquisition;
        const lock = this.track(new LockHandle(this, keys, token, fences, acquisition.ttl, validUntil, label));
        // The handle's acquiredAt is the moment: no clock read of its own on the hot path.
        const waited = lock.acquiredAt - acquisition.start;
        if (waited > this.slowWait) this.options.warn?.(messages.slowWait(label, keys, Math.round(waited), this.slowWait));
        if (this.observed('acquired')) {
          this.emit('acquired', { keys, token, fencingToken: lock.fencingToken, waited: Math.round(waited), label });
        }
        return lock;
      },
      timeout: (acquisition, last) => this.timeout(acquisition, last),
    };
    this.slowWait = options.slowWaitMs && options.warn ? options.slowWaitMs : Infinity;
    if (options.tenant !== undefined) {
      this.tenancy = new Tenancy(
        Tenancy.check(options.tenant, (option, value, expected) => {
          throw new LockArgumentError(messages.optionInvalid(option, value, expected));
        }),
      );
    }
  }

  /**
   * Takes the lock on `key` (or all keys, all-or-nothing), waiting up to `wait` ms.
   * @throws LockTimeoutError, LockUnavailableError, LockStoreError, LockShutdownError, LockArgumentError
   */
  async acquire(key: string | readonly string[], options?: AcquireOptions): Promise<Lock> {
    const request = this.settle(key, options, 'acquire()', ACQUIRE_OPTIONS);
    const lock = await this.take(request.keys, request.ttl, request.wait, request.label);
    if (request.autoExtend) lock.startHeartbeat(request.maxHold);
    return lock;
  }

  /** One attempt; null when the lock is busy. */
  async tryAcquire(key: string | readonly string[], options?: Omit<AcquireOptions, 'wait'>): Promise<Lock | null> {
    const request = this.settle(key, options, 'tryAcquire()', TRY_ACQUIRE_OPTIONS);
    let lock: LockHandle;
    try {
      lock = await this.take(request.keys, request.ttl, 0, request.label);
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
      lock = await this.take(request.keys, request.ttl, request.wait, request.label);
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
  async restore(key: string, token: string, options?: Pick<AcquireOptions, 'ttl' | 'autoExtend' | 'maxHold' | 'tenant'>): Promise<Lock> {
    const given = normalizeKeys(key);
    validateToken('restore()', token);
    const checked = validateLockOptions('restore()', options, RESTORE_OPTIONS);
    const [k] = this.scoped('restore()', given, options?.tenant);
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
   * the worker calls `restore(ref.key, ref.token, { tenant: ref.tenant })` and releases it, or it expires
   * after `ttl`. If `dispatch` throws, the lock is released and the error passes through.
   */
  async dispatchUnique<T>(
    key: string,
    options: Pick<AcquireOptions, 'ttl' | 'wait' | 'tenant'> | undefined,
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
      // The caller's key and the tenant, not the namespaced key: restore() namespaces it again.
      const ref: LockRef =
        request.tenant !== undefined
          ? { key: normalizeKeys(key)[0]!, token: lock.token, tenant: request.tenant }
          : this.options.tenant !== undefined
            ? { key: lock.key, token: lock.token, tenant: null }
            : { key: lock.key, token: lock.token };
      const result = await dispatch(ref);
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
  async isLocked(key: string, options?: Pick<AcquireOptions, 'tenant'>): Promise<boolean> {
    validateOptions('isLocked()', options, KEY_ONLY_OPTIONS);
    const keys = this.scoped('isLocked()', normalizeKeys(key), options?.tenant);
    this.assertOpen();
    return this.call('isLocked', this.store.isLocked(keys[0]!), keys, this.options.connectTimeout);
  }

  /**
   * Deletes the lock on `key` whoever holds it (an operator's escape hatch) and hands it to the next
   * waiter. True if it was held.
   * @throws LockUnavailableError, LockStoreError, LockShutdownError, LockArgumentError
   */
  async forceRelease(key: string, options?: Pick<AcquireOptions, 'tenant'>): Promise<boolean> {
    validateOptions('forceRelease()', options, KEY_ONLY_OPTIONS);
    const keys = this.scoped('forceRelease()', normalizeKeys(key), options?.tenant);
    this.assertOpen();
    return this.call('forceRelease', this.store.forceRelease(keys[0]!), keys, this.options.connectTimeout);
  }

  /**
   * Locks this process holds and acquisitions under way: counted here, no store call. A lock counts as
   * held until it is released or known to be lost (expired locally, found lost by its heartbeat).
   */
  stats(): LockStats {
    let held = 0;
    for (const lock of this.held) if (lock.isHeld) held++;
    return { held, acquiring: this.inflight.size };
  }

  /**
   * Emits `event` to its listeners and publishes it on its diagnostics channel
   * ({@link LOCK_CHANNELS}), when that channel has subscribers.
   */
  override emit<E extends keyof LockEvents>(event: E, ...args: LockEvents[E]): boolean {
    const channel = lockChannels[event];
    // A listener or subscriber that throws must not turn a lock taken into a failed acquisition (and a
    // handle left behind), or a release into a rejection: its error is reported to `warn` instead.
    try {
      if (channel.hasSubscribers) channel.publish(args[0]);
      return super.emit(event as keyof LockEvents, ...(args as LockEvents[keyof LockEvents]));
    } catch (error) {
      this.options.warn?.(messages.listenerThrew(event, error));
      return true;
    }
  }

  /**
   * Whether anyone listens to `event` here or on its diagnostics channel: emitters check it first, so
   * that nothing of an event is built when nobody would see it. @internal
   */
  observed(event: keyof LockEvents): boolean {
    return this.listenerCount(event) > 0 || lockChannels[event].hasSubscribers;
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
   * Whether the store answers now ({@link LockStore.health}; a store without it: an `isLocked` round
   * trip), within `timeoutMs` (default connectTimeout) and never much later, also when Redis is stopped
   * or frozen. Never rejects. @internal
   */
  async health(timeoutMs = this.options.connectTimeout): Promise<StoreHealth> {
    if (this.closed) return { up: false, details: { error: messages.closed() } };
    const ms = Math.max(1, Math.ceil(timeoutMs));
    const store = this.store;
    const pending = store.health
      ? store.health(ms)
      : store.isLocked(HEALTH_PROBE_KEY).then((): StoreHealth => ({ up: true, details: { store: 'custom' } }));
    try {
      return await this.call('health', pending, [], ms + 50);
    } catch (error) {
      return { up: false, details: { error: errorText(error) } };
    }
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

  /**
   * The idempotency record of `key` (a lock key, namespaced under `tenant` as `using()` would: pass the
   * same `tenant`), bounded by connectTimeout.
   * @throws LockStoreError when the store keeps no records. @internal
   */
  async getRecord(key: string, tenant?: string | null): Promise<string | undefined> {
    [key] = this.scoped('getRecord()', [key], tenant) as [string];
    this.assertOpen();
    const store = this.store;
    if (!store.getRecord) throw new LockStoreError(messages.noRecords(), 'RECORDS', [key]);
    return this.call('getRecord', store.getRecord(key), [key], this.options.connectTimeout);
  }

  /** Stores `value` as `lock`'s record for `ttl` ms while `lock` is still held (owner-checked). @internal */
  async putRecord(lock: Lock, value: string, ttl: number): Promise<boolean> {
    this.assertOpen();
    const store = this.store;
    if (!store.putRecord) throw new LockStoreError(messages.noRecords(), 'RECORDS', [lock.key]);
    return this.call('putRecord', store.putRecord(lock.key, lock.token, value, ttl), [lock.key], this.options.connectTimeout);
  }

  /** @internal LockHost */
  extendLock(lock: LockHandle, ttl: number, budget: number): Promise<boolean> {
    return this.call('extend', this.store.extend(lock.keys, lock.token, ttl), lock.keys, Math.max(0, budget) + this.options.connectTimeout);
  }

  /** @internal LockHost */
  releaseLock(lock: LockHandle): Promise<boolean> {
    this.held.delete(lock);
    const observed = this.observed('released');
    const heldFor = observed ? Math.round(monotonic() - lock.acquiredAt) : 0;
    // Gone or taken after a reconnect: an earlier run of this release (whose reply was lost, and which
    // ioredis re-sent) freed it if the answer came while the lock was still valid: it cannot have
    // expired yet, and nobody else could have freed it but an operator's forceRelease.
    const released = this.call('release', this.store.release(lock.keys, lock.token), lock.keys, this.options.connectTimeout).then(
      (outcome) => outcome === 'released' || (outcome === 'unsure' && lock.remaining() > 0),
    );
    if (!observed) return released;
    return released.then(
      (ok) => {
        this.emit('released', { keys: lock.keys, token: lock.token, held: ok, heldFor, label: lock.label });
        return ok;
      },
      (error: unknown) => {
        // No answer: not known to have been ours at the end; the lock is no longer held here either way.
        this.emit('released', { keys: lock.keys, token: lock.token, held: false, heldFor, label: lock.label });
        throw error;
      },
    );
  }

  /** @internal LockHost */
  lockLost(lock: LockHandle, error: LockLostError): void {
    if (this.observed('lost')) this.emit('lost', { keys: lock.keys, token: lock.token, error, label: lock.label });
  }

  /** @internal LockHost */
  lockExtended(lock: LockHandle, ttl: number, heartbeat: boolean): void {
    if (this.observed('extended')) this.emit('extended', { keys: lock.keys, token: lock.token, ttl, label: lock.label, heartbeat });
  }

  /**
   * The tenant of a call: its own `tenant` option (a tenant id; null: none), else the resolver's. null: none.
   * @throws LockArgumentError for a bad tenant, a missing required one, or a tenant given while tenancy is off.
   * @internal
   */
  tenantOf(where: string, given: unknown): string | null {
    if (!this.tenancy) {
      if (given === undefined || given === null) return null;
      throw new LockArgumentError(messages.tenantWithoutTenancy(where, given));
    }
    return this.tenancy.tenantOf(where, given) ?? null;
  }

  /** The keys a call locks in the store: namespaced under its tenant (see {@link tenantOf}). */
  private scoped(where: string, keys: string[], given: unknown): string[] {
    if (!this.tenancy) {
      if (given !== undefined) this.tenantOf(where, given);
      return keys;
    }
    return this.tenancy.keys(keys, this.tenantOf(where, given) ?? undefined);
  }

  private settle(key: string | readonly string[], options: unknown, where: string, known: readonly string[]) {
    const keys = normalizeKeys(key);
    const checked = validateLockOptions(where, options, known);
    // Tenancy off and no tenant given (the usual case): nothing to resolve, the keys are the store's.
    const given = (options as { tenant?: unknown } | undefined)?.tenant;
    const tenant = this.tenancy || given !== undefined ? this.tenantOf(where, given) : null;
    return {
      keys: this.tenancy ? this.tenancy.keys(keys, tenant ?? undefined) : keys,
      tenant: tenant ?? undefined,
      ttl: checked.ttl ?? this.options.ttl,
      wait: checked.wait ?? this.options.wait,
      maxHold: checked.maxHold ?? this.options.maxHold,
      autoExtend: checked.autoExtend,
      onLockLost: checked.onLockLost,
      label: checked.label,
    };
  }

  /** Runs one acquisition, announced, and tracked so that close() can wait for it. */
  private take(keys: string[], ttl: number, wait: number, label?: string): Promise<LockHandle> {
    this.assertOpen();
    const acquisition = new Acquisition(this.host, keys, ttl, wait, label);
    if (this.observed('acquiring')) this.emit('acquiring', { keys, token: acquisition.token, label, wait });
    const taking = acquisition.run();
    this.inflight.add(taking);
    const done = () => void this.inflight.delete(taking);
    taking.then(done, (error: unknown) => {
      done();
      // A timeout was announced as such (timeout()); anything else ends the acquisition as `failed`.
      if (!(error instanceof LockTimeoutError) && this.observed('failed')) {
        this.emit('failed', { keys, token: acquisition.token, label, error: error instanceof Error ? error : new Error(String(error)) });
      }
    });
    return taking;
  }

  private track(lock: LockHandle): LockHandle {
    this.held.add(lock);
    return lock;
  }

  private timeout(acquisition: Acquisition, last: AcquireResult): LockTimeoutError {
    const { keys, token, label } = acquisition;
    const waited = Math.round(monotonic() - acquisition.start);
    // Contention over the threshold: a timeout after waiting at least slowWaitMs. A short wait that ran out
    // (a BullMQ job requeued after 50 ms, tryAcquire, wait 0) is routine and its `timeout` event is enough.
    if (waited >= this.slowWait) this.options.warn?.(messages.waitTimedOut(label, keys, waited));
    if (this.observed('timeout')) this.emit('timeout', { keys, token, waited, label });
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
