import type { Redis, RedisOptions } from 'ioredis';
import type { LockStore } from '../core/store/store.js';
import type { OnLockLost } from '../core/types.js';

/** Options of {@link LockModule.forRoot}. All durations are milliseconds. */
export interface LockModuleOptions {
  /**
   * The Redis to lock on: a URL (`redis://[user:password@]host:port/db`, `rediss://…`),
   * ioredis options, or an ioredis client. A client you pass is not closed by the module;
   * connections the module creates are closed on shutdown. Ignored when `store` is given.
   * Default: `redis://127.0.0.1:6379`.
   */
  redis?: string | RedisOptions | Redis;
  /**
   * `'redis'` (default), `'memory'` (one process only: for unit tests and local development),
   * or your own {@link LockStore}.
   */
  store?: 'redis' | 'memory' | LockStore;
  /** Prefix of every Redis key and channel the library uses. Default `lock:`. */
  keyPrefix?: string;
  /** Default time to live of a lock. Default 30000. */
  ttl?: number;
  /** Default time to wait for a busy lock. Default 5000; 0 means one attempt. */
  wait?: number;
  /**
   * Keep locks taken by `@WithLock` and `using()` alive while the work runs (extend every ttl/3).
   * Default true.
   */
  autoExtend?: boolean;
  /** Longest time a heartbeat may keep one lock; after it the lock is left to expire and counts as lost. Default: unbounded. */
  maxHold?: number;
  /**
   * What `@WithLock`/`using()` do when the lock was lost while the work ran: `'continue'` returns the
   * work's result (default; `lock.signal` told the work), `'throw'` rejects with {@link LockLostError}
   * so that, e.g., a queue job is retried.
   */
  onLockLost?: OnLockLost;
  /** Bound on connecting to and answering from Redis, added to `wait` before an acquire gives up. Default 2000. */
  connectTimeout?: number;
}
