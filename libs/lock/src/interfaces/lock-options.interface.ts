import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import type { LockStore } from '../core/store/store.js';
import type { OnLockLost } from '../core/types.js';

/** One Redis server: a URL, ioredis options (also Sentinel options: `{ sentinels, name }`), or an ioredis client. */
export type LockRedisNode = string | RedisOptions | Redis;

/**
 * A Redis Cluster the module connects to (and closes on shutdown): seed nodes as URLs
 * (`redis://[user:password@]host:port`) or `{ host, port }`, and ioredis Cluster options.
 */
export interface LockClusterConnection {
  /** Seed nodes; the rest of the cluster is discovered from them. */
  cluster: readonly (string | ClusterNode)[];
  /** ioredis Cluster options (credentials go in `redisOptions`). */
  options?: ClusterOptions;
}

/** The `replicaAck` option: how many replicas must acknowledge a lock, and how long to wait for them. */
export interface LockReplicaAck {
  /** Replicas that must have the lock before it counts (1 to 64). */
  replicas: number;
  /** How long to wait for them after each acquisition, whole ms. */
  timeout: number;
}

/** Options of {@link LockModule.forRoot}. All durations are milliseconds. */
export interface LockModuleOptions {
  /**
   * The Redis to lock on (see docs/deployments.md). Ignored when `store` is given.
   * - one server: a URL (`redis://[user:password@]host:port/db`, `rediss://…`), ioredis options, or an
   *   ioredis client; Sentinel: ioredis options `{ sentinels: [{ host, port }], name: 'mymaster' }`;
   * - Redis Cluster: an ioredis `Cluster`, or `{ cluster: [seed URLs], options? }`;
   * - Redlock quorum: an array of 3 or more independent nodes (each a URL, options or client): a lock
   *   counts when a majority took it.
   *
   * A client you pass is not closed by the module; connections the module creates are closed on
   * shutdown. Default: `redis://127.0.0.1:6379`.
   */
  redis?: LockRedisNode | Cluster | LockClusterConnection | readonly LockRedisNode[];
  /**
   * A lock counts only once this many replicas acknowledged it (`WAIT replicas timeout` after the
   * acquisition, on one server with replicas, Sentinel or Cluster). Too few in time: the lock is given
   * back, the attempt retried within the wait, and the caller finally gets a `LockReplicaError`. Not
   * for a quorum (each of its nodes is independent). Default: off (replication is asynchronous: a lock
   * may be lost in a failover).
   */
  replicaAck?: LockReplicaAck;
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
