/**
 * The storage interface every lock backend implements: one Redis (RedisLockStore), memory
 * (MemoryLockStore), and later a quorum of independent nodes (Redlock) and Redis Cluster.
 * Keys here are the caller's keys; the store owns the key layout (prefix, hash tags).
 *
 * Contract (what the engine in lock-client.ts relies on):
 * - `acquire` is atomic over all keys (all-or-nothing). A single-key request with `queueUntil`
 *   joins the key's FIFO queue when the lock is busy; a release then hands the lock directly to
 *   the oldest live queued owner and notifies it through `watch` (`granted`). Multi-key requests
 *   register as watchers and are notified with `released`.
 * - A store may lose notifications; the engine retries on a timer bounded by the holder's pttl.
 */
export interface AcquireRequest {
  readonly keys: readonly string[];
  /** Owner id. */
  readonly token: string;
  /** Time to live, integer ms. */
  readonly ttl: number;
  /** When set: wait in the key's queue until this epoch ms if the lock is busy. */
  readonly queueUntil?: number;
}

export type AcquireResult =
  /** `remaining`: when the lock was handed over earlier (a missed notification), the ms of its ttl left. */
  | { readonly acquired: true; readonly fences: readonly number[]; readonly remaining?: number }
  /** `pttl`: the holder's remaining ttl in ms when known, else -1. */
  | { readonly acquired: false; readonly pttl: number };

/** A notification for a waiter. */
export type StoreEvent =
  | { readonly type: 'granted'; readonly token: string; readonly fence: number; readonly grantedAt: number }
  | { readonly type: 'released' };

export type StoreListener = (event: StoreEvent) => void;

export type InspectResult = { readonly held: true; readonly fence: number; readonly pttl: number } | { readonly held: false };

export interface LockStore {
  acquire(request: AcquireRequest): Promise<AcquireResult>;
  /** Owner-checked release of every key still held by `token`; hands each key to its next waiter. True if all were ours. */
  release(keys: readonly string[], token: string): Promise<boolean>;
  /** Owner-checked: sets the ttl of all keys, only if `token` holds every one of them. Never re-creates a key. */
  extend(keys: readonly string[], token: string, ttl: number): Promise<boolean>;
  /** Whether `token` holds `key`, with its fencing token and remaining ttl. */
  inspect(key: string, token: string): Promise<InspectResult>;
  isLocked(key: string): Promise<boolean>;
  /** Deletes the lock whoever holds it, and hands it to the next waiter. True if there was one. */
  forceRelease(key: string): Promise<boolean>;
  /**
   * Leaves the queue entered by `acquire(request)`. If the lock was granted to `request.token` in the
   * meantime, releases it (so a waiter that gave up never keeps a lock). True if that happened.
   */
  leave(request: AcquireRequest): Promise<boolean>;
  /**
   * Starts delivering events about `keys` to `listener` (for `token`'s grants and for releases)
   * and resolves once delivery is live. Returns the function that stops it.
   */
  watch(keys: readonly string[], token: string, listener: StoreListener): Promise<() => void>;
  /**
   * Optional: true when notifications for every key are already being delivered (e.g. the channel is
   * still subscribed from a recent wait). The engine then joins the queue on its first attempt, which
   * saves a round trip on a hot key; otherwise it tries once, subscribes, and queues on the retry.
   */
  listening?(keys: readonly string[]): boolean;
  /** Closes what the store opened. */
  close(): Promise<void>;
}
