import { ConfigurableModuleBuilder } from '@nestjs/common';
import { Redis } from 'ioredis';
import { LockClient } from './core/lock-client.js';
import { MemoryLockStore } from './core/memory-store.js';
import { RedisLockStore } from './core/redis-store.js';
import type { LockStore } from './core/store.js';
import { LockArgumentError } from './errors/lock.errors.js';
import type { LockModuleOptions } from './interfaces/lock-options.interface.js';
import { DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_TTL, DEFAULT_WAIT } from './lock.constants.js';
import { messages } from './lock.messages.js';

export const {
  ConfigurableModuleClass: ConfigurableLockModule,
  MODULE_OPTIONS_TOKEN: LOCK_MODULE_OPTIONS,
} = new ConfigurableModuleBuilder<LockModuleOptions>()
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: false }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();

const fail = (option: string, value: unknown, expected: string): never => {
  throw new LockArgumentError(messages.optionInvalid(option, value, expected));
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
  'isGlobal',
]);

/**
 * Validates the module options once, at boot, and builds the engine. Every message names the
 * option and the value. Nothing is sent to Redis before the options are known to be good.
 * @internal
 */
export function createLockClient(options: LockModuleOptions = {}): LockClient {
  if (typeof options !== 'object' || options === null) fail('options', options, 'must be an object');
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) fail(name, (options as Record<string, unknown>)[name], 'is not a LockModule option');
  }
  const positive = (name: keyof LockModuleOptions, fallback: number | undefined, zeroOk = false) => {
    const value = options[name];
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!zeroOk && value === 0)) {
      fail(name, value, zeroOk ? 'must be a finite number >= 0 (milliseconds)' : 'must be a positive finite number (milliseconds)');
    }
    return Math.ceil(value as number);
  };
  const ttl = positive('ttl', DEFAULT_TTL)!;
  const wait = positive('wait', DEFAULT_WAIT, true)!;
  const maxHold = positive('maxHold', undefined);
  const connectTimeout = positive('connectTimeout', DEFAULT_CONNECT_TIMEOUT)!;
  const keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
  if (typeof keyPrefix !== 'string' || /[{}]/.test(keyPrefix) || keyPrefix.length > 256) {
    fail('keyPrefix', keyPrefix, 'must be a string of at most 256 characters without { or } (they would break hash tags)');
  }
  const autoExtend = options.autoExtend ?? true;
  if (typeof autoExtend !== 'boolean') fail('autoExtend', autoExtend, 'must be true or false');
  const onLockLost = options.onLockLost ?? 'continue';
  if (onLockLost !== 'continue' && onLockLost !== 'throw') fail('onLockLost', onLockLost, "must be 'continue' or 'throw'");

  const { store, ownsStore } = createStore(options, keyPrefix, connectTimeout);
  return new LockClient({ store, ownsStore, ttl, wait, autoExtend, maxHold, onLockLost, connectTimeout });
}

function isStore(value: unknown): value is LockStore {
  const s = value as Partial<LockStore> | null;
  return typeof s === 'object' && s !== null && typeof s.acquire === 'function' && typeof s.release === 'function';
}

function createStore(options: LockModuleOptions, keyPrefix: string, connectTimeout: number): { store: LockStore; ownsStore: boolean } {
  const kind = options.store ?? 'redis';
  if (kind === 'memory') return { store: new MemoryLockStore(), ownsStore: true };
  if (isStore(kind)) return { store: kind, ownsStore: false };
  if (kind !== 'redis') throw new LockArgumentError(messages.storeInvalid(kind));
  const redis = options.redis ?? 'redis://127.0.0.1:6379';
  if ((redis as { isCluster?: boolean } | null)?.isCluster === true) {
    fail('redis', 'an ioredis Cluster', 'must be a single Redis (or a Sentinel-managed primary) in this version; Redis Cluster support is planned');
  }
  if (isClient(redis)) return { store: new RedisLockStore({ client: redis, keyPrefix }), ownsStore: true };
  // disconnectTimeout: ioredis otherwise keeps a 2 s timer alive when closing a connection that is down.
  const common = { connectTimeout, lazyConnect: false, maxRetriesPerRequest: 2, disconnectTimeout: 100 } as const;
  let client: Redis;
  if (typeof redis === 'string') {
    checkUrl(redis);
    client = new Redis(redis, common);
  } else if (typeof redis === 'object' && redis !== null) {
    client = new Redis({ ...common, ...redis });
  } else {
    return fail('redis', redis, 'must be a redis:// or rediss:// URL, ioredis options, or an ioredis client');
  }
  // Errors surface on the operations (as LockUnavailableError); an 'error' listener keeps ioredis from logging each retry.
  client.on('error', () => undefined);
  return { store: new RedisLockStore({ client, ownsClient: true, keyPrefix }), ownsStore: true };
}

/** Duck-typed, so a client from another copy of ioredis is recognised too. */
function isClient(value: unknown): value is Redis {
  const c = value as Partial<Redis> | null;
  return typeof c === 'object' && c !== null && typeof c.evalsha === 'function' && typeof c.duplicate === 'function';
}

function checkUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new LockArgumentError(messages.redisUrlInvalid(url, 'it cannot be parsed'));
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new LockArgumentError(messages.redisUrlInvalid(url, `the scheme is "${parsed.protocol}"`));
  }
  if (!parsed.hostname) throw new LockArgumentError(messages.redisUrlInvalid(url, 'it has no host'));
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new LockArgumentError(messages.redisUrlInvalid(url, `the database "${db}" is not a number`));
}
