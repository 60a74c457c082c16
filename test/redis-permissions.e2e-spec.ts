/**
 * Permanent refusals fail fast and say why (issue "The lease never lies", point 7), on a private
 * Redis 7 with ACL users that each miss one permission the library needs: boot or the first use
 * fails with LockStoreError (code NOPERM naming what is missing) well under the wait, never after
 * the whole wait as "unavailable"; a user with exactly the needed rights works; a database index the
 * server does not have, a wrong password, a lock key holding a hash or a foreign string fail at once.
 */
import { Test, type TestingModule } from '@nestjs/testing';
import { Redis } from 'ioredis';
import { LockModule, LockService, LockStoreError, type Lock, type LockModuleOptions } from 'nestjs-redis-lock';
import { checkRedisAccess } from '../libs/lock/src/core/store/redis/redis-access.js';
import { SCRIPTS } from '../libs/lock/src/core/store/redis/scripts.js';
import { startRedis, stopAll, type RedisServerHandle } from './helpers/redis-server.js';

const PREFIX = 'perm-e2e:';
const PASSWORD = 'perm-e2e-password';
/** Much longer than any refusal may take: a refusal that waits for it fails the test. */
const WAIT = 4_000;
const CONNECT_TIMEOUT = 1_000;
/** "At once": a few round trips and a connection, with slack for a slow machine, well under WAIT. */
const FAST = 1_500;

/** The commands the lock scripts call, read from their sources (so the test follows the scripts). */
const scriptCommands = (): string[] => {
  const found = new Set<string>();
  for (const script of Object.values(SCRIPTS) as { source: string }[]) {
    for (const match of script.source.matchAll(/redis\.p?call\(\s*['"]([A-Za-z]+)['"]/g)) found.add(match[1]!.toLowerCase());
  }
  return [...found].sort();
};

/** Everything the Redis store needs, and nothing else. */
const needed = (): string[] => ['evalsha', 'eval', 'publish', 'subscribe', 'unsubscribe', ...scriptCommands()];

interface Outcome {
  stage: 'boot' | 'use' | 'none';
  error?: unknown;
  ms: number;
}

describe('Redis permissions and permanent refusals (e2e)', () => {
  let server: RedisServerHandle;
  let admin: Redis;
  const modules: TestingModule[] = [];
  const clients: Redis[] = [];

  /** An ACL user `name` with password PASSWORD and exactly `rules`. */
  const user = async (name: string, rules: string[]): Promise<string> => {
    await admin.acl('SETUSER', name, 'reset', 'on', `>${PASSWORD}`, ...rules);
    return `redis://${name}:${PASSWORD}@127.0.0.1:${server.port}`;
  };
  /** The full rights, with `drop` removed and `extra` added. */
  const fullRules = (drop: string[] = [], extra: string[] = []): string[] => [
    `~${PREFIX}*`,
    `&${PREFIX}*`,
    ...needed()
      .filter((command) => !drop.includes(command))
      .map((command) => `+${command}`),
    ...extra,
  ];

  const client = (url: string): Redis => {
    const c = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: CONNECT_TIMEOUT, disconnectTimeout: 100, enableReadyCheck: false });
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };

  const boot = async (options: LockModuleOptions): Promise<{ module: TestingModule; locks: LockService }> => {
    const module = await Test.createTestingModule({
      imports: [LockModule.forRoot({ keyPrefix: PREFIX, wait: WAIT, connectTimeout: CONNECT_TIMEOUT, ...options })],
    })
      .setLogger(false as never)
      .compile();
    modules.push(module);
    await module.init();
    return { module, locks: module.get(LockService) };
  };

  /**
   * Boots an app on `url` and, if that works, takes `key` (held by someone else when `contended`, so
   * the waiter needs its notifications): whichever fails first, and how long it all took.
   */
  const bootOrFirstUse = async (url: string, key = 'k'): Promise<Outcome> => {
    const start = Date.now();
    let locks: LockService;
    try {
      ({ locks } = await boot({ redis: url }));
    } catch (error) {
      return { stage: 'boot', error, ms: Date.now() - start };
    }
    try {
      const lock: Lock = await locks.acquire(key, { wait: WAIT, ttl: 10_000 });
      await lock.release();
      return { stage: 'none', ms: Date.now() - start };
    } catch (error) {
      return { stage: 'use', error, ms: Date.now() - start };
    }
  };

  /** A holder with full rights, so that the key is busy and the waiter under test must queue and listen. */
  let holder: LockService;

  beforeAll(async () => {
    server = await startRedis();
    admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
    const full = await user('holder', fullRules());
    ({ locks: holder } = await boot({ redis: full }));
  }, 30_000);

  afterAll(async () => {
    await Promise.allSettled(modules.splice(0).map((m) => m.close()));
    for (const c of clients.splice(0)) c.disconnect();
    admin?.disconnect();
    await stopAll();
  }, 30_000);

  const expectRefusal = (outcome: Outcome, code: string, ...names: RegExp[]) => {
    expect(outcome.stage).not.toBe('none');
    expect(outcome.error).toBeInstanceOf(LockStoreError);
    expect((outcome.error as LockStoreError).code).toBe(code);
    for (const name of names) expect((outcome.error as Error).message).toMatch(name);
    expect(outcome.ms).toBeLessThan(FAST);
  };

  describe('checkRedisAccess() names the missing permission', () => {
    const cases: [string, () => string[], RegExp[]][] = [
      ['no EVALSHA', () => fullRules(['evalsha']), [/EVALSHA/, /\+evalsha/]],
      ['no EVAL', () => fullRules(['eval']), [/run EVAL\b/, /\+eval\b/]],
      ['no PUBLISH', () => fullRules(['publish']), [/PUBLISH/, /\+publish/]],
      ['no SUBSCRIBE', () => fullRules(['subscribe']), [/SUBSCRIBE/, /\+subscribe/]],
      ['no UNSUBSCRIBE', () => fullRules(['unsubscribe']), [/UNSUBSCRIBE/, /\+unsubscribe/]],
      ['no channel of the prefix', () => fullRules().filter((rule) => !rule.startsWith('&')), [/SUBSCRIBE/, new RegExp(`&${PREFIX}\\*`)]],
      [
        'no key of the prefix',
        () => fullRules().map((rule) => (rule.startsWith('~') ? '~elsewhere:*' : rule)),
        [new RegExp(PREFIX), new RegExp(`~${PREFIX}\\*`)],
      ],
      [
        'read-only keys of the prefix',
        () => fullRules().map((rule) => (rule.startsWith('~') ? `%R~${PREFIX}*` : rule)),
        [/write keys matching/, new RegExp(`~${PREFIX}\\*`)],
      ],
      ['no ZADD (a command of the scripts)', () => fullRules(['zadd']), [/ZADD/, /\+zadd/]],
      ['no TIME (a command of the scripts)', () => fullRules(['time']), [/TIME/, /\+time/]],
    ];

    it.each(cases)('%s → LockStoreError NOPERM naming it, at once', async (name, rules, names) => {
      if (name.includes('ZADD') || name.includes('TIME')) {
        // Only meaningful while the scripts use the command.
        expect(scriptCommands()).toContain(name.includes('ZADD') ? 'zadd' : 'time');
      }
      const url = await user(`u${cases.findIndex(([n]) => n === name)}`, rules());
      const start = Date.now();
      const error = await checkRedisAccess(client(url), PREFIX, { timeoutMs: 3_000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expectRefusal({ stage: 'boot', error, ms: Date.now() - start }, 'NOPERM', ...names);
    });

    it('exactly the needed rights pass, and the check leaves no key, channel or connection behind', async () => {
      const url = await user('exact-check', fullRules());
      const before = {
        keys: await admin.dbsize(),
        clients: String(await admin.client('LIST'))
          .trim()
          .split('\n').length,
      };
      const c = client(url);
      await c.ping().catch(() => undefined);
      await expect(checkRedisAccess(c, PREFIX, { timeoutMs: 3_000 })).resolves.toBeUndefined();
      expect(await admin.dbsize()).toBe(before.keys);
      expect(await admin.pubsub('CHANNELS', `${PREFIX}*`)).toEqual([]);
      c.disconnect();
      clients.splice(clients.indexOf(c), 1);
      // The SUBSCRIBE connection of the check is closed (the server may take a moment to notice).
      for (let i = 0; i < 50; i++) {
        const now = String(await admin.client('LIST'))
          .trim()
          .split('\n').length;
        if (now <= before.clients) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(
        String(await admin.client('LIST'))
          .trim()
          .split('\n').length,
      ).toBeLessThanOrEqual(before.clients);
    });

    it('a database index the server does not have → LockStoreError DB (instead of silently locking in DB 0)', async () => {
      const c = client(`${server.url}/99`);
      const error = await checkRedisAccess(c, PREFIX, { timeoutMs: 3_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockStoreError);
      expect((error as LockStoreError).code).toBe('DB');
      expect((error as Error).message).toMatch(/database 99/);
    });

    it('a wrong password → LockStoreError AUTH', async () => {
      await user('auth-check', fullRules());
      const c = client(`redis://auth-check:not-the-password@127.0.0.1:${server.port}`);
      const error = await checkRedisAccess(c, PREFIX, { timeoutMs: 3_000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockStoreError);
      expect((error as LockStoreError).code).toBe('AUTH');
    });
  });

  describe('through LockModule: boot or first use fails at once', () => {
    const rows: [string, () => string[], RegExp[]][] = [
      ['no EVALSHA', () => fullRules(['evalsha']), [/EVALSHA/]],
      ['no EVAL', () => fullRules(['eval']), [/EVAL\b/]],
      ['no PUBLISH', () => fullRules(['publish']), [/PUBLISH/]],
      // Without SUBSCRIBE a waiter would silently fall back to polling: that must be an error too.
      ['no SUBSCRIBE', () => fullRules(['subscribe']), [/SUBSCRIBE/]],
      ['no key of the prefix', () => fullRules().map((rule) => (rule.startsWith('~') ? '~elsewhere:*' : rule)), [/key/]],
      ['read-only keys', () => fullRules().map((rule) => (rule.startsWith('~') ? `%R~${PREFIX}*` : rule)), [/key|write/]],
    ];

    it.each(rows)('%s → LockStoreError NOPERM, well under the wait', async (name, rules, names) => {
      const url = await user(`m${rows.findIndex(([n]) => n === name)}`, rules());
      // The key is busy, so the waiter must queue and subscribe: every permission is exercised.
      const held = await holder.acquire('busy', { ttl: 10_000 });
      try {
        expectRefusal(await bootOrFirstUse(url, 'busy'), 'NOPERM', ...names);
      } finally {
        await held.release();
      }
    });

    it('a user with exactly the needed rights boots, waits on a busy key, is handed the lock and releases it', async () => {
      const url = await user('exact', fullRules());
      const { locks } = await boot({ redis: url });
      const held = await holder.acquire('handoff', { ttl: 10_000 });
      const waiting = locks.acquire('handoff', { wait: WAIT, ttl: 10_000 });
      await new Promise((resolve) => setTimeout(resolve, 200));
      const start = Date.now();
      await held.release();
      const lock = await waiting;
      // Handed over through the notification, not found by a poll much later.
      expect(Date.now() - start).toBeLessThan(FAST);
      expect(lock.isHeld).toBe(true);
      await expect(lock.release()).resolves.toBe(true);
      expect(await locks.isLocked('handoff')).toBe(false);
    });

    it('redis://…/99 on a 16-database server → LockStoreError DB, not locks in DB 0', async () => {
      const outcome = await bootOrFirstUse(`${server.url}/99`);
      expectRefusal(outcome, 'DB', /99/);
      const inDb0 = await admin.keys(`${PREFIX}{k}*`);
      expect(inDb0).toEqual([]);
    });

    it('a database index the user may not SELECT (redis://…/1 without +select) → LockStoreError NOPERM naming SELECT', async () => {
      const url = await user('no-select', fullRules());
      expectRefusal(await bootOrFirstUse(`${url}/1`), 'NOPERM', /SELECT/);
    });

    it('a wrong password → LockStoreError AUTH', async () => {
      await user('auth-module', fullRules());
      expectRefusal(
        await bootOrFirstUse(`redis://auth-module:wrong-${PASSWORD}@127.0.0.1:${server.port}`),
        'AUTH',
        /credentials|WRONGPASS/,
      );
    });
  });

  describe('a lock key that holds something else (depends on the scripts refusing foreign values)', () => {
    let locks: LockService;

    beforeAll(async () => {
      ({ locks } = await boot({ redis: server.url }));
    });

    it('a hash under the lock key → LockStoreError WRONGTYPE naming the key, at once, and the hash is left alone', async () => {
      await admin.hset(`${PREFIX}{hashed}`, 'field', 'value');
      const start = Date.now();
      const error = await locks.acquire('hashed', { wait: WAIT }).catch((e: unknown) => e);
      expectRefusal({ stage: 'use', error, ms: Date.now() - start }, 'WRONGTYPE', /hashed/);
      expect(await admin.hgetall(`${PREFIX}{hashed}`)).toEqual({ field: 'value' });
      await admin.del(`${PREFIX}{hashed}`);
    });

    it('a foreign string under the lock key → LockStoreError FOREIGN naming the Redis key, at once, and the value is left alone', async () => {
      await admin.set(`${PREFIX}{foreign}`, 'somebody else’s data');
      const start = Date.now();
      const error = await locks.acquire('foreign', { wait: WAIT }).catch((e: unknown) => e);
      expectRefusal(
        { stage: 'use', error, ms: Date.now() - start },
        'FOREIGN',
        new RegExp(`${PREFIX}\\{foreign\\}`.replace(/[-]/g, '\\-')),
      );
      expect(await admin.get(`${PREFIX}{foreign}`)).toBe('somebody else’s data');
      // using() and isLocked() refuse it just the same.
      await expect(locks.using('foreign', { wait: 0 }, () => 'ran')).rejects.toMatchObject({ code: 'FOREIGN' });
      await admin.del(`${PREFIX}{foreign}`);
    });
  });
});
