import { ConfigurableModuleBuilder, type FactoryProvider, type ModuleMetadata, type Provider, type Type } from '@nestjs/common';
import { Cluster, Redis, type ClusterNode, type ClusterOptions } from 'ioredis';
import { LockClient } from './core/lock-client.js';
import { MemoryLockStore } from './core/store/memory/memory-store.js';
import { RedisLockStore } from './core/store/redis/redis-store.js';
import { QuorumLockStore } from './core/store/redlock/quorum-store.js';
import type { LockStore } from './core/store/store.js';
import { redact, registerSecret, toLockError } from './core/store-errors.js';
import { LockArgumentError, LockStoreError } from './core/errors.js';
import type { LockClusterConnection, LockModuleOptions, LockRedisNode } from './interfaces/lock-options.interface.js';
import { DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_SLOW_WAIT, DEFAULT_TTL, DEFAULT_WAIT } from './lock.constants.js';
import { messages } from './core/messages.js';
import { MAX_DURATION, MIN_TTL } from './core/validate.js';
import { Tenancy } from './core/tenancy.js';

/** Options of `forRoot`/`forRootAsync` that shape the module itself rather than the locks. */
export interface LockModuleExtras {
  /** Register the module globally (its LockService visible to every module). Default false. */
  isGlobal?: boolean;
  /** Providers added to the module, e.g. what a `useClass` options factory itself injects. */
  extraProviders?: Provider[];
}

export const {
  ConfigurableModuleClass: ConfigurableLockModule,
  /**
   * The injection token of the module's options (the {@link LockModuleOptions} given to `forRoot`, or
   * built by `forRootAsync`), e.g. `@Inject(LOCK_MODULE_OPTIONS)` in a provider of your own.
   */
  MODULE_OPTIONS_TOKEN: LOCK_MODULE_OPTIONS,
} = new ConfigurableModuleBuilder<LockModuleOptions>()
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createLockOptions')
  .setExtras<LockModuleExtras>({ isGlobal: false, extraProviders: [] }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
    providers: [...(definition.providers ?? []), ...(extras.extraProviders ?? [])],
  }))
  .build();

// The two option types below are spelled out rather than taken from the builder (`typeof OPTIONS_TYPE`,
// `typeof ASYNC_OPTIONS_TYPE`), so the public API names no internal constant and the docs list every
// member; LockModule.forRoot and forRootAsync pass them to the builder's methods, so the compiler
// checks that they still fit its types.

/** Options of `LockModule.forRoot()`: the lock options plus `isGlobal` and `extraProviders`. */
export interface LockModuleRootOptions extends LockModuleOptions, LockModuleExtras {}

/**
 * Options of `LockModule.forRootAsync()`: `useFactory` (with `inject`), `useClass` or `useExisting` (a
 * {@link LockOptionsFactory}), `imports`, plus `isGlobal` and `extraProviders`.
 */
export interface LockModuleAsyncOptions extends LockModuleExtras {
  /** Modules to import for the factory's dependencies (e.g. a ConfigModule). */
  imports?: ModuleMetadata['imports'];
  /** Builds the options (or a Promise of them) from the providers listed in `inject`, in that order. */
  useFactory?: (...args: any[]) => Promise<LockModuleOptions> | LockModuleOptions;
  /** The providers passed to `useFactory`. */
  inject?: FactoryProvider['inject'];
  /** A {@link LockOptionsFactory} class the module instantiates to build the options. */
  useClass?: Type<LockOptionsFactory>;
  /** An existing provider (a {@link LockOptionsFactory}) that builds the options. */
  useExisting?: Type<LockOptionsFactory>;
  /** Providers of a parent module from which only those named in `inject` are provided (for nested async modules). */
  provideInjectionTokensFrom?: Provider[];
}

/** A class that builds the module's options, for `forRootAsync({ useClass })` or `{ useExisting }`. */
export interface LockOptionsFactory {
  /** Returns the module's options (or a Promise of them); called once, when the module is created. */
  createLockOptions(): Promise<LockModuleOptions> | LockModuleOptions;
}

/** Option names whose value is never shown in a message. */
const SECRET_OPTION = /pass|secret|token|auth|credential/i;

const fail = (option: string, value: unknown, expected: string): never => {
  throw new LockArgumentError(messages.optionInvalid(option, SECRET_OPTION.test(option) ? '***' : redact(value), expected));
};

const KNOWN_OPTIONS = new Set([
  'redis',
  'store',
  'keyPrefix',
  'ttl',
  'wait',
  'autoExtend',
  'maxHold',
  'onLockLost',
  'connectTimeout',
  'replicaAck',
  'slowWaitMs',
  'tenant',
  'isGlobal',
  'extraProviders',
]);

/**
 * Validates the module options once, at boot, and builds the engine. Every message names the
 * option and the value. Nothing is sent to Redis before the options are known to be good.
 * @param warn where the engine reports slow waits and timeouts (LockService passes its Logger).
 * @internal
 */
export function createLockClient(options: LockModuleOptions = {}, warn?: (message: string) => void): LockClient {
  if (typeof options !== 'object' || options === null) fail('options', options, 'must be an object');
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) fail(name, (options as Record<string, unknown>)[name], 'is not a LockModule option');
  }
  /** A duration in whole ms (rounded up) within min..MAX_DURATION, the largest delay Node timers handle. */
  const duration = (name: keyof LockModuleOptions, fallback: number | undefined, min: number) => {
    const value = options[name];
    if (value === undefined) return fallback;
    const ms = typeof value === 'number' ? Math.ceil(value) : Number.NaN;
    if (!(ms >= min && ms <= MAX_DURATION) || (value as number) < 0) {
      fail(name, value, `must be a number of milliseconds from ${min} to ${MAX_DURATION}`);
    }
    return ms;
  };
  const ttl = duration('ttl', DEFAULT_TTL, MIN_TTL)!;
  const wait = duration('wait', DEFAULT_WAIT, 0)!;
  const maxHold = duration('maxHold', undefined, MIN_TTL);
  const connectTimeout = duration('connectTimeout', DEFAULT_CONNECT_TIMEOUT, 1)!;
  const keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
  if (typeof keyPrefix !== 'string' || /[{}]/.test(keyPrefix) || keyPrefix.length > 256) {
    fail('keyPrefix', keyPrefix, 'must be a string of at most 256 characters without { or } (they would break hash tags)');
  }
  const autoExtend = options.autoExtend ?? true;
  if (typeof autoExtend !== 'boolean') fail('autoExtend', autoExtend, 'must be true or false');
  const onLockLost = options.onLockLost ?? 'continue';
  if (onLockLost !== 'continue' && onLockLost !== 'throw') fail('onLockLost', onLockLost, "must be 'continue' or 'throw'");
  const slowWait: unknown = options.slowWaitMs ?? DEFAULT_SLOW_WAIT;
  if (slowWait !== false && (typeof slowWait !== 'number' || !(slowWait >= 0 && Math.ceil(slowWait) <= MAX_DURATION))) {
    fail('slowWaitMs', slowWait, `must be false (no contention logging) or a number of milliseconds from 0 to ${MAX_DURATION}`);
  }
  const slowWaitMs = slowWait === false ? 0 : Math.ceil(slowWait as number);

  const tenant = options.tenant === undefined ? undefined : Tenancy.check(options.tenant, fail);

  const { store, ownsStore } = createStore(options, keyPrefix, connectTimeout);
  return new LockClient({ store, ownsStore, ttl, wait, autoExtend, maxHold, onLockLost, connectTimeout, slowWaitMs, warn, tenant });
}

function isStore(value: unknown): value is LockStore {
  const s = value as Partial<LockStore> | null;
  return typeof s === 'object' && s !== null && typeof s.acquire === 'function' && typeof s.release === 'function';
}

function createStore(options: LockModuleOptions, keyPrefix: string, connectTimeout: number): { store: LockStore; ownsStore: boolean } {
  const kind = options.store ?? 'redis';
  if (options.replicaAck !== undefined && kind !== 'redis') {
    fail(
      'replicaAck',
      options.replicaAck,
      `is only for the Redis store (with store ${kind === 'memory' ? "'memory'" : 'a LockStore instance'} nothing would wait for replicas)`,
    );
  }
  if (kind === 'memory') return { store: new MemoryLockStore(), ownsStore: true };
  if (isStore(kind)) return { store: kind, ownsStore: false };
  if (kind !== 'redis') throw new LockArgumentError(messages.storeInvalid(kind));
  const redis = options.redis ?? 'redis://127.0.0.1:6379';
  const replicaAck = checkReplicaAck(options.replicaAck);
  if (Array.isArray(redis)) {
    const nodes = redis as readonly LockRedisNode[];
    if (nodes.length === 1) return { store: nodeStore(nodes[0]!, keyPrefix, connectTimeout, replicaAck), ownsStore: true };
    if (nodes.length < 3) {
      fail(
        'redis',
        `${nodes.length} nodes`,
        'must be one Redis, or 3 or more independent nodes for a quorum (Redlock): with 2, one node down stops every lock',
      );
    }
    if (replicaAck) fail('replicaAck', options.replicaAck, 'is not for a quorum of independent nodes (each node is its own primary)');
    // Every node checked before any connection is opened.
    nodes.forEach((node, i) => {
      if ((node as { isCluster?: boolean } | null)?.isCluster === true)
        fail(`redis[${i}]`, 'an ioredis Cluster', 'must be a single Redis: a quorum is made of independent servers');
      if (typeof node === 'string') checkUrl(node);
      else if (typeof node === 'object' && node !== null) {
        if (!isClient(node)) checkRedisOptions(node);
      } else fail(`redis[${i}]`, node, 'must be a redis:// or rediss:// URL, ioredis options or an ioredis client');
    });
    // The same server twice would count twice towards the majority.
    const seen = new Map<string, number>();
    nodes.forEach((node, i) => {
      const server = serverOf(node);
      const first = seen.get(server);
      if (first !== undefined)
        fail(`redis[${i}]`, redact(server), `is the same server as redis[${first}]: a quorum needs independent nodes, each counted once`);
      seen.set(server, i);
    });
    const stores = nodes.map((node) => nodeStore(node, keyPrefix, connectTimeout, undefined, true));
    return { store: new QuorumLockStore({ nodes: stores, nodeTimeout: Math.max(1, Math.floor(connectTimeout / 2)) }), ownsStore: true };
  }
  if ((redis as { isCluster?: boolean } | null)?.isCluster === true) {
    const cluster = redis as Cluster;
    checkClusterKeyPrefix("the Cluster client's keyPrefix", cluster.options?.keyPrefix);
    registerSecret(cluster.options?.redisOptions?.password);
    return { store: new RedisLockStore({ client: cluster, keyPrefix, ...watchCluster(cluster, false), replicaAck }), ownsStore: true };
  }
  if (typeof redis === 'object' && redis !== null && !isClient(redis) && 'cluster' in redis) {
    const cluster = createCluster(redis as LockClusterConnection, connectTimeout);
    return {
      store: new RedisLockStore({ client: cluster, ownsClient: true, keyPrefix, ...watchCluster(cluster, true), replicaAck }),
      ownsStore: true,
    };
  }
  return { store: nodeStore(redis as LockRedisNode, keyPrefix, connectTimeout, replicaAck), ownsStore: true };
}

/**
 * A Cluster client's own keyPrefix comes before every name the store builds, so it takes part in the
 * hash tag: without braces it changes nothing; one whole tag (`{app}:`) puts every lock of the module
 * in that tag's slot (allowed: the store then treats all keys as one slot); any other brace would
 * send a lock and its fencing counter to different slots (CROSSSLOT).
 */
function checkClusterKeyPrefix(option: string, prefix: unknown): void {
  if (prefix === undefined || prefix === null || prefix === '') return;
  if (typeof prefix !== 'string' || (/[{}]/.test(prefix) && !/^[^{}]*\{[^{}]+\}[^{}]*$/.test(prefix))) {
    fail(
      option,
      prefix,
      'must have no braces, or one whole hash tag such as "{app}:" (any other brace splits a lock from its fencing counter on Cluster)',
    );
  }
}

/** Which server a quorum node names, to refuse the same one twice: host:port/db, the Sentinel master's name, or the client. */
function serverOf(node: LockRedisNode): string {
  if (typeof node === 'string') {
    const url = new URL(node);
    return `${url.hostname}:${url.port || 6379}/${url.pathname.replace(/^\//, '') || 0}`;
  }
  const options = (isClient(node) ? node.options : node) as {
    host?: string;
    port?: number;
    db?: number;
    name?: string;
    sentinels?: unknown;
  };
  if (Array.isArray(options.sentinels)) return `sentinel master ${String(options.name)}`;
  return `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}/${options.db ?? 0}`;
}

/** `replicaAck`, checked: whole numbers of replicas (1..64) and of ms. */
function checkReplicaAck(value: unknown): { replicas: number; timeout: number } | undefined {
  if (value === undefined) return undefined;
  const { replicas, timeout, ...rest } = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  if (typeof value !== 'object' || value === null || Object.keys(rest).length > 0) {
    fail('replicaAck', value, 'must be { replicas: number, timeout: number }');
  }
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 1 || replicas > 64) {
    fail('replicaAck.replicas', replicas, 'must be a whole number of replicas from 1 to 64');
  }
  if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1 || timeout > MAX_DURATION) {
    fail('replicaAck.timeout', timeout, `must be a whole number of milliseconds from 1 to ${MAX_DURATION}`);
  }
  return { replicas: replicas as number, timeout: timeout as number };
}

/** A Cluster client from seed URLs or nodes; its credentials come from the URLs or `redisOptions`. */
function createCluster(connection: LockClusterConnection, connectTimeout: number): Cluster {
  const { cluster: seeds, options = {} } = connection;
  if (!Array.isArray(seeds) || seeds.length === 0) fail('redis.cluster', seeds, 'must be a non-empty array of seed URLs or { host, port }');
  // ioredis takes redisOptions.keyPrefix as the Cluster's when it has none of its own.
  if (options.keyPrefix !== undefined) checkClusterKeyPrefix('redis.options.keyPrefix', options.keyPrefix);
  else checkClusterKeyPrefix('redis.options.redisOptions.keyPrefix', options.redisOptions?.keyPrefix);
  const nodes: ClusterNode[] = [];
  let credentials: { username?: string; password?: string } = {};
  const schemes = new Set<string>();
  seeds.forEach((seed: unknown, i: number) => {
    if (typeof seed === 'string') {
      checkUrl(seed);
      const url = new URL(seed);
      schemes.add(url.protocol);
      nodes.push({ host: url.hostname, port: Number(url.port || 6379) });
      if (url.password) credentials = { username: safeDecode(url.username) || undefined, password: safeDecode(url.password) };
    } else if (typeof seed === 'object' && seed !== null) nodes.push(seed as ClusterNode);
    else fail(`redis.cluster[${i}]`, seed, 'must be a redis:// URL or { host, port }');
  });
  if (schemes.size > 1)
    fail(
      'redis.cluster',
      seeds.map((seed: unknown) => (typeof seed === 'string' ? redact(seed) : seed) as unknown),
      'must not mix redis:// and rediss:// seeds',
    );
  // rediss:// seeds mean TLS to every node, as a rediss:// URL does for one server.
  const tls = schemes.has('rediss:') ? { tls: {} } : {};
  const redisOptions = { connectTimeout, maxRetriesPerRequest: 2, disconnectTimeout: 100, ...tls, ...credentials, ...options.redisOptions };
  registerSecret(redisOptions.password);
  const clusterOptions: ClusterOptions = { ...options, redisOptions };
  return new Cluster(nodes, clusterOptions);
}

/** What the store is given to read a connection's last error, and to stop listening when it closes. */
interface Watched {
  readonly lastError: () => unknown;
  readonly detach: () => void;
}

/** Records the last error a Cluster client reported (redacted), for messages; `detach` leaves a user's Cluster as it was. */
function watchCluster(cluster: Cluster, owned: boolean): Watched {
  let last: unknown;
  const onError = (error: unknown) => {
    last = redact(error);
  };
  const onReady = () => {
    last = undefined;
  };
  cluster.on('error', onError);
  cluster.on('ready', onReady);
  return {
    lastError: () => last,
    detach: () => {
      if (owned) return;
      cluster.off('error', onError);
      cluster.off('ready', onReady);
    },
  };
}

/** The store of one server (directly or through Sentinel). */
function nodeStore(
  redis: LockRedisNode,
  keyPrefix: string,
  connectTimeout: number,
  replicaAck: { replicas: number; timeout: number } | undefined,
  announceReleases = false,
): RedisLockStore {
  if (isClient(redis)) {
    registerSecret(redis.options?.password);
    registerSecret(redis.options?.sentinelPassword);
    return new RedisLockStore({ client: redis, keyPrefix, ...watchConnection(redis, false, connectTimeout), replicaAck, announceReleases });
  }
  // disconnectTimeout: ioredis otherwise keeps a 2 s timer alive when closing a connection that is down.
  const common = { connectTimeout, lazyConnect: false, maxRetriesPerRequest: 2, disconnectTimeout: 100 } as const;
  let client: Redis;
  if (typeof redis === 'string') {
    checkUrl(redis);
    client = new Redis(redis, common);
  } else if (typeof redis === 'object' && redis !== null) {
    checkRedisOptions(redis);
    // Sentinel: leave a deposed primary at once (it stays writable for seconds after SENTINEL FAILOVER,
    // and locks taken there would be lost when it is demoted).
    const sentinel = Array.isArray((redis as { sentinels?: unknown }).sentinels) ? { failoverDetector: true } : {};
    client = new Redis({ ...common, ...sentinel, ...redis });
  } else {
    return fail(
      'redis',
      redis,
      'must be a redis:// or rediss:// URL, ioredis options, an ioredis client or Cluster, { cluster: [...] }, or an array of 3+ nodes',
    );
  }
  registerSecret(client.options.password);
  registerSecret(client.options.sentinelPassword);
  // Errors surface on the operations (as LockError); the listener also keeps ioredis from logging each retry.
  return new RedisLockStore({
    client,
    ownsClient: true,
    keyPrefix,
    ...watchConnection(client, true, connectTimeout),
    replicaAck,
    announceReleases,
  });
}

/**
 * Records what the connection last reported, for messages: a connection error (refused, DNS, TLS),
 * a connection that was opened but did not become ready within `connectTimeout` (a server that does
 * not speak Redis, or never answers), both cleared once the connection is ready again; and a database
 * index the server refused, kept until a handshake succeeds without that refusal. Everything recorded
 * is redacted.
 *
 * ioredis only emits 'error' when SELECT is refused on connect (index out of range, or SELECT not
 * allowed) and then runs every command in database 0. A connection the module owns is closed instead
 * (and reconnects, so it recovers once the server has the database): no lock is ever taken in the
 * wrong database. On a client of the user's the refusal is only recorded (the boot check fails on it).
 * @returns `lastError` for the store: a LockStoreError (code DB or NOPERM) for a refused database, a
 *   connection error, or undefined; and `detach`, which the store calls when it closes.
 */
function watchConnection(client: Redis, owned: boolean, connectTimeout: number): Watched {
  let last: unknown;
  let refusal: LockStoreError | undefined;
  let refusedNow = false;
  let handshake: NodeJS.Timeout | undefined;
  const tls = client.options?.tls !== undefined && client.options?.tls !== null;
  const where = () => `${String(client.options?.host ?? '?')}:${String(client.options?.port ?? '?')}`;
  const onConnect = () => {
    refusedNow = false;
    clearTimeout(handshake);
    handshake = setTimeout(() => {
      last = new Error(messages.connectionNotReady(where(), connectTimeout));
    }, connectTimeout);
    handshake.unref();
  };
  const onClose = () => clearTimeout(handshake);
  const onReady = () => {
    clearTimeout(handshake);
    last = undefined;
    if (!refusedNow) refusal = undefined;
  };
  const onError = (error: unknown) => {
    const command = (error as { command?: { name?: unknown } } | null)?.command;
    const refused = command?.name === 'select' ? toLockError(`SELECT ${String(client.options?.db ?? 0)} on connect`, error) : undefined;
    if (refused instanceof LockStoreError) {
      // Out of range (DB) or not allowed (NOPERM): either way ioredis would go on in database 0.
      refusedNow = true;
      refusal =
        refused.code === 'DB'
          ? new LockStoreError(messages.accessDb(Number(client.options?.db ?? 0), redact((error as Error).message)), 'DB', [], {
              cause: refused.cause,
            })
          : refused;
      if (owned) client.disconnect(true);
      return;
    }
    last = describeConnectionError(error, tls, where());
  };
  const listeners = { connect: onConnect, close: onClose, ready: onReady, error: onError } as const;
  for (const [event, listener] of Object.entries(listeners)) client.on(event, listener);
  return {
    lastError: () => refusal ?? last,
    detach: () => {
      clearTimeout(handshake);
      // A client of the user's is left as it was given; one of ours keeps a listener, so an error of
      // its last moments is not logged as unhandled.
      if (!owned) for (const [event, listener] of Object.entries(listeners)) client.off(event, listener);
    },
  };
}

/** A redacted copy of a connection error; a TLS connect that times out says what that usually means. */
function describeConnectionError(error: unknown, tls: boolean, where: string): unknown {
  const safe = redact(error);
  const code = (error as { code?: unknown } | null)?.code;
  if (tls && code === 'ETIMEDOUT' && (error as { syscall?: unknown }).syscall === 'connect') {
    return Object.assign(new Error(messages.tlsNotCompleted(where, (safe as Error).message), { cause: safe }), { code });
  }
  return safe;
}

/** Duck-typed, so a client from another copy of ioredis is recognised too. */
function isClient(value: unknown): value is Redis {
  const c = value as Partial<Redis> | null;
  return typeof c === 'object' && c !== null && typeof c.evalsha === 'function' && typeof c.duplicate === 'function';
}

/** Checks a Redis URL. Messages show it as redis://user:***@host:port/db: never its password. */
function checkUrl(url: string): void {
  const shown = redact(url);
  const invalid = (reason: string) => new LockArgumentError(messages.redisUrlInvalid(shown, reason));
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not the parser's error as cause: Node's carries the whole URL in `input`.
    throw invalid('it cannot be parsed');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw invalid(`the scheme is "${parsed.protocol}"`);
  if (!parsed.hostname) throw invalid('it has no host');
  registerSecret(safeDecode(parsed.password));
  registerSecret(parsed.password);
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw invalid(`the database "${redact(db)}" is not a number`);
  if (db !== '' && !Number.isSafeInteger(Number(db))) throw invalid(`the database ${db} is out of range`);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The parts of ioredis options the module relies on: a database index that can exist. */
function checkRedisOptions(options: object): void {
  const { db } = options as { db?: unknown };
  if (db !== undefined && (typeof db !== 'number' || !Number.isSafeInteger(db) || db < 0)) {
    fail('redis.db', db, 'must be a database index: an integer >= 0');
  }
}
