import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import type { LockStore } from '../core/store/store.js';
import type { OnLockLost } from '../core/types.js';
import type { TenancyOptions, TenantResolver } from '../core/tenancy.js';

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
  /**
   * Contention logging: an acquisition that waited longer than this many ms is logged at warn (Nest
   * `Logger`, context `LockService`) with its label, keys and wait, and so is every acquisition that
   * waited and timed out (a one-attempt `tryAcquire()` that finds the lock busy is not). `0` or
   * `false`: neither is logged. Lost locks are always logged at warn. Default 1000.
   */
  slowWaitMs?: number | false;
  /**
   * Tenant key isolation (docs/tenancy.md): a resolver of the current tenant, called at every lock and
   * idempotency call that passes no `tenant` of its own (e.g. `() => cls.get('tenantId')`, or
   * `currentTenant` with `withTenant()`), or `{ resolve?, required?, slot? }`. A call with a tenant locks
   * `@<tenant>/<key>` (the tenant percent-encoded), so tenants never share a lock or a stored result; a
   * call without one locks the plain key, or is refused with `required: true`. `slot: true` keeps each
   * tenant's keys in one Redis Cluster slot. Default: off (keys are not namespaced).
   */
  tenant?: TenantResolver | TenancyOptions;
}
