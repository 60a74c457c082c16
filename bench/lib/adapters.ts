/**
 * The locks under test behind one interface, each on its own ioredis connection with default options.
 * Wait and retry policies are each library's defaults, except that every library gets the same
 * wait budget (WAIT_BUDGET_MS) so none gives up in the hot-key run; see bench/README.md.
 */
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import Redlock from 'redlock';
import { Redlock as SesameRedlock } from '@sesamecare-oss/redlock';
import { Mutex } from 'redis-semaphore';
import { LockClient, RedisLockStore } from 'nestjs-redis-lock';

export const LIBS = ['ours', 'redlock', 'sesame', 'semaphore', 'laravel', 'floor'] as const;
export type LibName = (typeof LIBS)[number];

export const LIB_LABELS: Record<LibName, string> = {
  ours: 'nestjs-redis-lock (LockClient)',
  redlock: 'redlock 5.0.0-beta.2',
  sesame: '@sesamecare-oss/redlock 1.4',
  semaphore: 'redis-semaphore 5.8 Mutex',
  laravel: 'Laravel-style poll (250 ms)',
  floor: 'floor: SET NX PX + Lua DEL (1 ms retry)',
};

/** How long any library may wait for one lock before giving up (ms). */
export const WAIT_BUDGET_MS = 30_000;
/** redlock's and @sesamecare-oss/redlock's default retryDelay (their retryJitter is 100). */
const REDLOCK_RETRY_DELAY = 200;
/** Laravel's Lock::block() sleeps 250 ms between attempts. */
const LARAVEL_SLEEP_MS = 250;
/** The floor's pause between attempts on a busy lock. */
const FLOOR_RETRY_MS = 1;

const OWNER_DEL = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

export interface Held {
  release(): Promise<unknown>;
}

export interface LockAdapter {
  readonly name: LibName;
  /** Waits per the library's policy; throws when it gives up. */
  acquire(key: string): Promise<Held>;
  close(): Promise<void>;
}

export interface AdapterOptions {
  url: string;
  /** Lock time to live, ms. */
  ttl: number;
}

/** Thrown by the hand-written polls when the wait budget ran out. */
export class GaveUpError extends Error {}

interface ScriptClient extends Redis {
  benchRelease(key: string, owner: string): Promise<number>;
}

export async function createAdapter(name: LibName, { url, ttl }: AdapterOptions): Promise<LockAdapter> {
  const client = new Redis(url);
  client.on('error', () => undefined);
  await client.ping();
  const ns = `bench:${name}:`;
  const close = async () => {
    await client.quit().catch(() => client.disconnect());
  };

  switch (name) {
    case 'ours': {
      const store = new RedisLockStore({ client, keyPrefix: ns });
      // Module defaults (lock.constants.ts / lock.module-definition.ts), wait raised to the common budget.
      const locks = new LockClient({
        store,
        ownsStore: true,
        ttl,
        wait: WAIT_BUDGET_MS,
        autoExtend: false,
        onLockLost: 'continue',
        connectTimeout: 2_000,
      });
      return {
        name,
        acquire: (key) => locks.acquire(key),
        close: async () => {
          await locks.close();
          await close();
        },
      };
    }
    case 'redlock':
    case 'sesame': {
      // Defaults (retryDelay 200, retryJitter 100, driftFactor 0.01), retryCount raised from 10 to cover the budget.
      const settings = { retryCount: Math.ceil(WAIT_BUDGET_MS / REDLOCK_RETRY_DELAY) };
      const redlock = name === 'redlock' ? new Redlock([client], settings) : new SesameRedlock([client], settings);
      redlock.on('error', () => undefined);
      return {
        name,
        acquire: (key) => (redlock as Redlock).acquire([ns + key], ttl),
        close,
      };
    }
    case 'semaphore': {
      // Defaults (retryInterval 10 ms, refresh every 0.8 ttl), acquireTimeout raised from 10 s to the budget.
      return {
        name,
        acquire: async (key) => {
          const mutex = new Mutex(client, ns + key, { lockTimeout: ttl, acquireTimeout: WAIT_BUDGET_MS });
          await mutex.acquire();
          return mutex;
        },
        close,
      };
    }
    case 'laravel':
    case 'floor': {
      const retry = name === 'laravel' ? LARAVEL_SLEEP_MS : FLOOR_RETRY_MS;
      // Laravel sends the release script with EVAL every time; the floor uses EVALSHA (defineCommand).
      const release =
        name === 'laravel'
          ? (key: string, owner: string) => client.eval(OWNER_DEL, 1, key, owner)
          : (() => {
              client.defineCommand('benchRelease', { numberOfKeys: 1, lua: OWNER_DEL });
              return (key: string, owner: string) => (client as ScriptClient).benchRelease(key, owner);
            })();
      return {
        name,
        acquire: async (key) => {
          const k = ns + key;
          const owner = randomBytes(16).toString('hex');
          const deadline = Date.now() + WAIT_BUDGET_MS;
          for (let attempt = 0; attempt <= WAIT_BUDGET_MS / retry && Date.now() < deadline; attempt++) {
            if ((await client.set(k, owner, 'PX', ttl, 'NX')) === 'OK') return { release: () => release(k, owner) };
            await sleep(retry);
          }
          throw new GaveUpError(`${name}: no lock on ${k} within ${WAIT_BUDGET_MS} ms`);
        },
        close,
      };
    }
  }
}
