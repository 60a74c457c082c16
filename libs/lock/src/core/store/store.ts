/** One call of {@link LockStore.acquire}: take `keys` for `token`, optionally queueing while they are busy. */
export interface AcquireRequest {
  /** The caller's lock keys (without the prefix), taken all-or-nothing. */
  readonly keys: readonly string[];
  /** Owner id. */
  readonly token: string;
  /** Time to live, integer ms. */
  readonly ttl: number;
  /**
   * When set: if the lock is busy, wait in the key's queue for at most this many ms (integer, > 0),
   * counted by the store from when the entry joins. The same value for every attempt of one wait.
   */
  readonly queueFor?: number;
}

/** The answer of {@link LockStore.acquire}: the lock was taken (with its fencing tokens), or it is busy. */
export type AcquireResult =
  | {
      /** The token now holds every requested key. */
      readonly acquired: true;
      /** The fencing token of each key, in the order of the request's keys. */
      readonly fences: readonly number[];
      /**
       * Set when the lock was taken before this call (handed over while not listening, or by an earlier
       * or re-sent attempt of the same token): the ms of its ttl left when the store answered.
       */
      readonly remaining?: number;
      /**
       * The validity basis: the monotonic time (`performance.now()` of this process) from which the
       * lock's ttl (or `remaining`) counts, when the store sent the commands that took it. Unset: the
       * engine counts from when it called `acquire`, which is never later.
       */
      readonly validFrom?: number;
    }
  | {
      /** The lock is busy: the token does not hold it. */
      readonly acquired: false;
      /** The holder's remaining ttl in ms when known, else -1. */
      readonly pttl: number;
      /** The holder's fencing token when known (grants with a fence not above it are stale). */
      readonly fence?: number;
      /** The waiter's 0-based place in the queue, when it queued. */
      readonly rank?: number;
    };

/** A notification for a waiter, delivered through {@link LockStore.watch}. */
export type StoreEvent =
  /** The lock was handed to `token` with `ttl`; `next`: the waiters now first in line. */
  | {
      /** Discriminant: the lock was handed to a waiter. */
      readonly type: 'granted';
      /** The waiter (owner id) the lock now belongs to. */
      readonly token: string;
      /** The fencing token of the grant. */
      readonly fence: number;
      /** The ttl of the grant in ms, when the store sends it. */
      readonly ttl?: number;
      /** The owner ids of the waiters now first in line. */
      readonly next?: readonly string[];
    }
  /** `tokens` are now first in line: they should watch the holder's expiry. */
  | {
      /** Discriminant: new waiters are first in line. */
      readonly type: 'next';
      /** The owner ids of the waiters now first in line. */
      readonly tokens: readonly string[];
    }
  /** The lock was handed to another waiter, for at most `ttl` ms unless extended (told to the other waiters). */
  | {
      /** Discriminant: the lock went to another waiter. */
      readonly type: 'handed';
      /** The new holder's ttl in ms: the lock is free again after it unless extended. */
      readonly ttl: number;
    }
  /** A key was released or deleted: watchers should try again now. */
  | {
      /** Discriminant: the lock was freed. */
      readonly type: 'released';
    };

/** Receives the {@link StoreEvent}s of a {@link LockStore.watch} subscription. */
export type StoreListener = (event: StoreEvent) => void;

/**
 * What a release found: `released` every key was ours (or already handed on by us: a re-sent release);
 * `not-ours` some key was gone or held by another owner; `unsure` the same, but the connection was
 * re-established while the release was on its way, so an earlier run of this very release may have
 * freed it (the engine decides: ours if the answer came within the lock's validity).
 */
export type ReleaseOutcome = 'released' | 'not-ours' | 'unsure';

/** The answer of {@link LockStore.inspect}: whether the token holds the key, and if so its fence and ttl left. */
export type InspectResult =
  | {
      /** The token holds the key. */
      readonly held: true;
      /** The key's current fencing token. */
      readonly fence: number;
      /** The lock's remaining ttl in ms. */
      readonly pttl: number;
    }
  | {
      /** The key is free or held by another owner. */
      readonly held: false;
    };

/** The answer of {@link LockStore.health}: up or down, with what was found (shown on a /health page: no secrets). */
export interface StoreHealth {
  /** True when the store can take locks now. */
  readonly up: boolean;
  /** What was checked and found, e.g. `{ store: 'redis', mode: 'single', roundTripMs: 1 }`. */
  readonly details: Record<string, unknown>;
}

/**
 * The storage interface every lock backend implements: one Redis, Sentinel or Redis Cluster
 * (RedisLockStore), a quorum of independent nodes (QuorumLockStore, Redlock), and memory
 * (MemoryLockStore). Keys here are the caller's keys; the store owns the key layout (prefix, hash tags).
 *
 * The core every store has: `acquire`, `release`, `extend`, `inspect`, `isLocked`, `forceRelease`,
 * `leave`, `close`. Optional capabilities:
 * - **queue + atomic hand-off**: the store honours `queueFor` (FIFO queue, a release hands the lock to
 *   the oldest waiter and sends `granted`, answers carry the waiter's `rank`). A store without it (the
 *   quorum store) ignores `queueFor`: waiters retry when woken, and there are no grants.
 * - **notifications**: `watch` (and `listening`). A store without them is polled (100 ms doubling to 1 s,
 *   never later than the holder's expiry).
 *
 * Contract (what the engine in lock-client.ts relies on):
 * - `acquire` is atomic over all keys (all-or-nothing) and idempotent: run twice with the same
 *   request (a re-sent command), the second run answers "acquired" with the ttl left.
 * - A single-key request with `queueFor` joins the key's FIFO queue when the lock is busy; a release
 *   then hands the lock directly to the oldest live queued owner and notifies it through `watch`
 *   (`granted`). Multi-key requests register as watchers and are notified with `released`.
 * - Time: the store never compares the caller's clock with another process's. Queue deadlines are
 *   the store's own clock plus `queueFor`; ttls are durations.
 * - Fencing tokens strictly increase per key across holders, expiries and restarts.
 * - A store may lose notifications; the engine retries on a timer bounded by the holder's pttl.
 */
export interface LockStore {
  /** Tries to take every key of `request` for its token at once; with `queueFor`, queues while they are busy. */
  acquire(request: AcquireRequest): Promise<AcquireResult>;
  /** Owner-checked release of every key still held by `token`; hands each key to its next waiter. */
  release(keys: readonly string[], token: string): Promise<ReleaseOutcome>;
  /** Owner-checked: sets the ttl of all keys, only if `token` holds every one of them. Never re-creates a key. */
  extend(keys: readonly string[], token: string, ttl: number): Promise<boolean>;
  /** Whether `token` holds `key`, with its fencing token and remaining ttl. */
  inspect(key: string, token: string): Promise<InspectResult>;
  /** Whether anyone holds `key` now. */
  isLocked(key: string): Promise<boolean>;
  /** Deletes the lock whoever holds it, and hands it to the next waiter. True if there was one. */
  forceRelease(key: string): Promise<boolean>;
  /**
   * Leaves the queue entered by `acquire(request)` and gives back any key `request.token` holds
   * (a grant that raced with giving up, or an attempt whose answer was lost). Idempotent.
   * True if a key was given back.
   */
  leave(request: AcquireRequest): Promise<boolean>;
  /**
   * Starts delivering events about `keys` to `listener` (for `token`'s grants and for releases)
   * and resolves once delivery is live. Returns the function that stops it.
   */
  watch?(keys: readonly string[], token: string, listener: StoreListener): Promise<() => void>;
  /**
   * Optional: true when notifications for every key are already being delivered (e.g. the channel is
   * still subscribed from a recent wait). The engine then joins the queue on its first attempt, which
   * saves a round trip on a hot key; otherwise it tries once, subscribes, and queues on the retry.
   */
  listening?(keys: readonly string[]): boolean;
  /**
   * Optional: told when a call got no answer within its bound, so the store can check its connection
   * and replace one that stopped answering (a half-open socket).
   */
  suspect?(): void;
  /** Optional: the last connection error seen, for messages (it must carry no secret). */
  lastError?(): unknown;
  /**
   * Optional (idempotency records): stores `value` under `key`'s record for `ttl` ms, only while `token`
   * holds the lock on `key` (owner-checked, in one step). True if stored.
   */
  putRecord?(key: string, token: string, value: string, ttl: number): Promise<boolean>;
  /** Optional (idempotency records): the record stored under `key`, or undefined. */
  getRecord?(key: string): Promise<string | undefined>;
  /** Optional: checks at boot that the store may run everything it needs (permissions); throws a LockError. */
  check?(timeoutMs: number): Promise<void>;
  /**
   * Optional: whether the store answers now (a PING round trip; a Cluster's slot coverage; a quorum's
   * answering nodes), within about `timeoutMs`. Never rejects: a silent or failing store is `up: false`.
   * A store without it is checked with `isLocked` instead.
   */
  health?(timeoutMs: number): Promise<StoreHealth>;
  /** Closes what the store opened, within about `timeoutMs` (default: unbounded) even if the server does not answer. */
  close(timeoutMs?: number): Promise<void>;
}
