/**
 * Tenant key isolation on a real Redis (docs/tenancy.md): a table of crafted tenant ids and keys where
 * every (tenant, key) pair gets its own lock and Redis names while the same pair excludes; the tenant
 * from an AsyncLocalStorage resolver and from a call's argument; `@WithLock` and `@Idempotent` with a
 * tenant from the arguments (one tenant's stored result never replayed to another); bad tenants refused
 * before any store call; `slot: true` on a real Redis Cluster (one slot per tenant, multi-key locks in
 * it); an ACL user restricted to one tenant's keys, which locks its tenant and is refused another's.
 */
import { Controller, Headers, Injectable, Module, Param, Post, type INestApplication, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test, type TestingModule } from '@nestjs/testing';
import { Cluster, Redis } from 'ioredis';
import {
  IdempotencyService,
  Idempotent,
  LockArgumentError,
  LockClient,
  LockLostError,
  LockModule,
  LockService,
  LockStoreError,
  LockTimeoutError,
  RedisLockStore,
  RouteLock,
  WithLock,
  currentLock,
  currentTenant,
  lockKey,
  withTenant,
  type Lock,
  type LockStore,
} from 'nestjs-redis-lock';
import request from 'supertest';
import { SCRIPTS } from '../libs/lock/src/core/store/redis/scripts.js';
import { KeyLayout } from '../libs/lock/src/core/store/redis/key-layout.js';
import { createLockClient } from '../libs/lock/src/lock.module-definition.js';
import { dropKeys, keysMatching, randomPrefix, redisUrl, settle } from './fixtures/lock-e2e-utils.js';
import { withoutCounters } from './helpers/lock-keys.js';
import { startRedis, stopAll, type RedisServerHandle } from './helpers/redis-server.js';
import { clusterKeySlot, startCluster, stopAllTopologies, type ClusterHandle } from './helpers/redis-topologies.js';

/** Tenant ids that collide under a naive `${tenant}:${key}` join, with braces, slashes, %, unicode. */
const TENANTS = ['a', 'a:b', 'a/b', 'a}b', '{a}', '%2F', '@a', 'ü', 'u\u0308', '😀', 'tenant-42'];
/** Keys that recreate another pair of the table under a naive join. */
const KEYS = ['b', 'b:c', 'c', 'b/c', '/c', 'b}c', '%2Fc', 'ü'];

/** A store that counts the calls it passes on to the real one (to prove a refusal sent nothing). */
function counting(store: LockStore): { store: LockStore; calls: () => number } {
  let calls = 0;
  const proxy = new Proxy(store, {
    get(target, name, receiver) {
      const value: unknown = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (name !== 'close' && name !== 'suspect' && name !== 'lastError') calls++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store: proxy, calls: () => calls };
}

/** Waits (bounded) until the Redis key `name` exists. */
async function waitForLock(redis: Redis, name: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await redis.exists(name)) === 1) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${name} did not appear within 2 s`);
}

/** The error `pending` rejects with; fails when it resolves. */
async function rejection(pending: Promise<unknown>): Promise<Error> {
  try {
    await pending;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

describe('tenant key isolation (e2e)', () => {
  const keyPrefix = randomPrefix('tenancy');
  const apps: INestApplicationContext[] = [];
  const clients: LockClient[] = [];
  let admin: Redis;

  const client = (options: Parameters<typeof createLockClient>[0]): LockClient => {
    const c = createLockClient({ redis: redisUrl(), keyPrefix, wait: 0, ...options });
    clients.push(c);
    return c;
  };

  beforeAll(() => {
    admin = new Redis(redisUrl());
  });
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await dropKeys(redisUrl(), keyPrefix);
    admin.disconnect();
  });

  it('gives every crafted (tenant, key) pair its own lock and Redis names; the same pair excludes', async () => {
    const locks = client({ tenant: {} });
    const pairs: [string | null, string][] = [];
    for (const tenant of [null, ...TENANTS]) for (const key of KEYS) pairs.push([tenant, key]);
    const held = await Promise.all(pairs.map(([tenant, key]) => locks.tryAcquire(key, { tenant, ttl: 20_000 })));
    // No pair excluded another: all granted at once.
    expect(held.every((lock) => lock !== null)).toBe(true);
    // The same pair again is busy, for every pair.
    const again = await Promise.all(pairs.map(([tenant, key]) => locks.tryAcquire(key, { tenant, ttl: 20_000 })));
    expect(again.filter((lock) => lock !== null)).toHaveLength(0);
    // One Redis lock name per pair, all different.
    const names = withoutCounters(await keysMatching(admin, `${keyPrefix}*`));
    expect(new Set(names).size).toBe(pairs.length);
    expect(names.sort()).toEqual(held.map((lock) => new KeyLayout(keyPrefix).lock(lock!.key)).sort());
    const released = await Promise.all(held.map((lock) => lock!.release()));
    expect(released.every(Boolean)).toBe(true);
    expect(withoutCounters(await keysMatching(admin, `${keyPrefix}*`))).toEqual([]);
  });

  it('the same key without tenancy would be one lock (the test can fail)', async () => {
    const plain = client({});
    const first = await plain.tryAcquire('shared', { ttl: 5_000 });
    expect(first).not.toBeNull();
    expect(await plain.tryAcquire('shared', { ttl: 5_000 })).toBeNull();
    await first!.release();
  });

  describe('in a Nest app with an AsyncLocalStorage resolver', () => {
    let locks: LockService;
    let idempotency: IdempotencyService;
    let service: Accounts;
    const runs: string[] = [];

    @Injectable()
    class Accounts {
      @WithLock({ key: (_tenant: string, id: string) => lockKey('account', id), tenant: (tenant: string, _id: string) => tenant, wait: 0 })
      async hold(_tenant: string, _id: string, until: Promise<void>): Promise<string> {
        const key = currentLock()!.key;
        await until;
        return key;
      }

      @Idempotent((_tenant: string, id: string) => `pay:${id}`, { tenant: (tenant: string, _id: string) => tenant })
      async pay(tenant: string, id: string): Promise<{ tenant: string; id: string; run: number }> {
        runs.push(tenant);
        return { tenant, id, run: runs.length };
      }
    }

    beforeAll(async () => {
      @Module({ imports: [LockModule.forRoot({ redis: redisUrl(), keyPrefix, wait: 0, tenant: currentTenant })], providers: [Accounts] })
      class AppModule {}
      const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
      apps.push(app);
      locks = app.get(LockService);
      idempotency = app.get(IdempotencyService);
      service = app.get(Accounts);
    });

    it('takes the tenant from withTenant(), a call’s tenant over it, and none outside', async () => {
      const acme = await withTenant('acme', () => locks.acquire('report', { ttl: 10_000 }));
      expect(acme.key).toBe('@acme/report');
      expect(await withTenant('acme', () => locks.tryAcquire('report'))).toBeNull();
      const globex = await withTenant('globex', () => locks.tryAcquire('report', { ttl: 10_000 }));
      expect(globex?.key).toBe('@globex/report');
      // The call's own tenant wins over the resolver's.
      expect(await withTenant('globex', () => locks.tryAcquire('report', { tenant: 'acme' }))).toBeNull();
      // Outside any tenant (and with tenant: null inside one): the plain key, shared by no tenant.
      const global = await locks.tryAcquire('report', { ttl: 10_000 });
      expect(global?.key).toBe('report');
      expect(await withTenant('acme', () => locks.tryAcquire('report', { tenant: null }))).toBeNull();
      expect(await locks.isLocked('report', { tenant: 'acme' })).toBe(true);
      expect(await withTenant('initech', () => locks.isLocked('report'))).toBe(false);
      expect(await withTenant('acme', () => locks.forceRelease('report'))).toBe(true);
      expect(await locks.isLocked('report', { tenant: 'acme' })).toBe(false);
      expect(await locks.isLocked('report')).toBe(true);
      await Promise.all([acme.release(), globex!.release(), global!.release()]);
    });

    it('is re-entrant within one tenant only', async () => {
      const inner = await withTenant('acme', () =>
        locks.using('r', { ttl: 10_000 }, (outer) =>
          Promise.all([
            locks.using('r', {}, (same) => same === outer),
            locks.using('r', { tenant: 'globex' }, (other) => other !== outer && other.key === '@globex/r'),
          ]),
        ),
      );
      expect(inner).toEqual([true, true]);
    });

    it('dispatchUnique() hands out the caller’s key and the tenant, and restore() finds the lock with them', async () => {
      const ref = await withTenant('acme', () => locks.dispatchUnique('job:1', { ttl: 10_000 }, (r) => r));
      expect(ref).toEqual({ key: 'job:1', token: expect.any(String), tenant: 'acme' });
      // A worker with no tenant context: without the ref's tenant the lock is not found.
      expect(await rejection(locks.restore(ref!.key, ref!.token))).toBeInstanceOf(LockLostError);
      const restored = await locks.restore(ref!.key, ref!.token, { tenant: ref!.tenant });
      expect(restored.key).toBe('@acme/job:1');
      expect(await restored.release()).toBe(true);
    });

    it('@WithLock takes the tenant from the arguments: two tenants run at once, the same tenant waits', async () => {
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      try {
        const first = service.hold('acme', 'a/1', gate);
        await waitForLock(admin, `${keyPrefix}{@acme/account:a%2F1}`);
        // Another tenant, the same account id: its own lock, granted while acme holds.
        expect(await service.hold('globex', 'a/1', Promise.resolve())).toBe('@globex/account:a%2F1');
        expect(await rejection(service.hold('acme', 'a/1', Promise.resolve()))).toBeInstanceOf(LockTimeoutError);
        open();
        expect(await first).toBe('@acme/account:a%2F1');
      } finally {
        open();
      }
    });

    it('@Idempotent and IdempotencyService keep each tenant’s stored result for that tenant', async () => {
      expect(await service.pay('acme', 'p1')).toEqual({ tenant: 'acme', id: 'p1', run: 1 });
      // The same key for another tenant runs, and is not given acme's result.
      expect(await service.pay('globex', 'p1')).toEqual({ tenant: 'globex', id: 'p1', run: 2 });
      expect(await service.pay('acme', 'p1')).toEqual({ tenant: 'acme', id: 'p1', run: 1 });
      expect(runs).toEqual(['acme', 'globex']);
      const records = (await keysMatching(admin, `${keyPrefix}*:r`)).sort();
      expect(records).toEqual([`${keyPrefix}{@acme/idempotency:pay:p1}:r`, `${keyPrefix}{@globex/idempotency:pay:p1}:r`]);

      // The service: tenant from the resolver, or given.
      const seen: string[] = [];
      const work = (who: string) => () => {
        seen.push(who);
        return who;
      };
      expect(await withTenant('acme', () => idempotency.run('invoice', {}, work('acme')))).toBe('acme');
      expect(await idempotency.run('invoice', { tenant: 'globex' }, work('globex'))).toBe('globex');
      expect(await idempotency.run('invoice', { tenant: 'acme' }, work('again'))).toBe('acme');
      expect(await idempotency.run('invoice', {}, work('none'))).toBe('none');
      expect(seen).toEqual(['acme', 'globex', 'none']);
    });
  });

  it('@RouteLock takes the tenant from the request: two tenants at once, the same tenant gets 423', async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    @Controller('accounts')
    class AccountsController {
      @Post(':id/adjust')
      @RouteLock({
        key: (req: { params: { id: string } }) => lockKey('account', req.params.id),
        tenant: (req) => req.headers['x-tenant'],
        wait: 0,
      })
      async adjust(@Param('id') id: string, @Headers('x-hold') hold?: string): Promise<{ id: string; key: string }> {
        const key = currentLock()!.key;
        if (hold) await gate;
        return { id, key };
      }
    }
    @Module({ imports: [LockModule.forRoot({ redis: redisUrl(), keyPrefix, wait: 0, tenant: {} })], controllers: [AccountsController] })
    class HttpModule {}
    const app: INestApplication = await NestFactory.create(HttpModule, { logger: false });
    apps.push(app);
    await app.init();
    const http = () => request(app.getHttpServer());
    try {
      const slow = http()
        .post('/accounts/slow/adjust')
        .set('x-tenant', 'acme')
        .set('x-hold', '1')
        .then((res) => res);
      await waitForLock(admin, `${keyPrefix}{@acme/account:slow}`);
      await http().post('/accounts/slow/adjust').set('x-tenant', 'globex').expect(201, { id: 'slow', key: '@globex/account:slow' });
      await http().post('/accounts/slow/adjust').set('x-tenant', 'acme').expect(423);
      open();
      expect((await slow).body).toEqual({ id: 'slow', key: '@acme/account:slow' });
    } finally {
      open();
    }
    // A tenant the request does not name: the plain key.
    await http().post('/accounts/plain/adjust').expect(201, { id: 'plain', key: 'account:plain' });
  });

  it('refuses bad tenants, a missing required one, and "@" keys without a tenant, before any store call', async () => {
    const redis = new Redis(redisUrl(), { maxRetriesPerRequest: 1 });
    const { store, calls } = counting(new RedisLockStore({ client: redis, keyPrefix }));
    const settings = { store, ttl: 1_000, wait: 0, autoExtend: false, onLockLost: 'continue', connectTimeout: 1_000 } as const;
    const required = new LockClient({ ...settings, tenant: { required: true, resolve: () => undefined } });
    let resolved: unknown;
    const optional = new LockClient({ ...settings, tenant: () => resolved as string | undefined });
    const off = new LockClient(settings);
    const token = 'A'.repeat(22);
    const rows: [string, () => Promise<unknown>, string][] = [
      ['acquire, no tenant (required)', () => required.acquire('k'), 'acquire() has no tenant'],
      ['tryAcquire, null (required)', () => required.tryAcquire('k', { tenant: null }), 'tryAcquire() has no tenant'],
      ['using, empty tenant', () => required.using('k', { tenant: '' }, () => 1), 'using() option tenant must be a tenant id'],
      ['acquire, number tenant', () => required.acquire('k', { tenant: 42 as never }), 'number 42'],
      ['acquire, too long', () => required.acquire('k', { tenant: 'x'.repeat(257) }), 'at most 256'],
      ['acquire, lone surrogate', () => required.acquire('k', { tenant: 'a\uD800' }), 'well-formed'],
      ['isLocked, no tenant', () => required.isLocked('k'), 'isLocked() has no tenant'],
      ['forceRelease, object tenant', () => required.forceRelease('k', { tenant: {} as never }), 'forceRelease() option tenant'],
      ['restore, no tenant', () => required.restore('k', token), 'restore() has no tenant'],
      ['dispatchUnique, no tenant', () => required.dispatchUnique('k', {}, () => 1), 'dispatchUnique() has no tenant'],
      ['isLocked, unknown option', () => required.isLocked('k', { tenat: 'a' } as never), 'unknown option "tenat"'],
      [
        'resolver returns a number',
        () => {
          resolved = 7;
          return optional.acquire('k');
        },
        'tenant resolver',
      ],
      [
        'resolver returns a Promise',
        () => {
          resolved = Promise.resolve('acme');
          return optional.acquire('k');
        },
        'must be synchronous',
      ],
      [
        '"@" key, no tenant',
        () => {
          resolved = undefined;
          return optional.acquire('@acme/k');
        },
        'starts with "@"',
      ],
      ['tenant with tenancy off', () => off.acquire('k', { tenant: 'acme' }), 'tenancy is off'],
    ];
    try {
      for (const [name, call, fragment] of rows) {
        const error = await rejection(call());
        expect({ name, error }).toEqual({ name, error: expect.any(LockArgumentError) });
        expect({ name, message: error.message }).toEqual({ name, message: expect.stringContaining(fragment) });
      }
      expect(calls()).toBe(0);
      // The same clients do reach the store with a good tenant (so the counter counts).
      expect(await required.isLocked('k', { tenant: 'acme' })).toBe(false);
      expect(await off.isLocked('k', { tenant: null })).toBe(false);
      expect(calls()).toBe(2);
    } finally {
      await Promise.all([required.close(), optional.close(), off.close()]);
      redis.disconnect();
    }
  });

  it('refuses a bad tenant option at boot, naming it', () => {
    for (const [tenant, fragment] of [
      ['acme', 'LockModule option "tenant" must be a resolver'],
      [{ slot: 1 }, '"tenant.slot" must be true or false'],
      [{ resolver: () => 'a' }, '"tenant.resolver" is not a tenant option'],
    ] as const) {
      expect(() => createLockClient({ redis: redisUrl(), tenant: tenant as never })).toThrow(LockArgumentError);
      expect(() => createLockClient({ redis: redisUrl(), tenant: tenant as never })).toThrow(fragment);
    }
  });
});

describe('tenant slots on a real Redis Cluster (e2e)', () => {
  let cluster: ClusterHandle;
  let data: Cluster;
  const clients: LockClient[] = [];
  const keyPrefix = randomPrefix('tenancy-cluster');

  beforeAll(async () => {
    cluster = await startCluster({ replicasPerMaster: 0 });
    data = new Cluster([...cluster.seeds]);
    data.on('error', () => undefined);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => settle(c.close(), 5_000)));
    data?.disconnect();
    await stopAllTopologies();
    await stopAll();
  }, 30_000);

  const lockClient = (slot: boolean): LockClient => {
    const c = createLockClient({ redis: { cluster: [...cluster.urls] }, keyPrefix, wait: 0, tenant: { slot } });
    clients.push(c);
    return c;
  };
  const KEYS = ['a', 'b', 'c', 'order:1', 'order:2', 'ü', 'x}y'];

  it('slot: true keeps every key of one tenant in one slot, and a multi-key lock of it in one script', async () => {
    const locks = lockClient(true);
    const layout = new KeyLayout(keyPrefix);
    const lock = await locks.acquire(KEYS, { tenant: 'acme', ttl: 20_000 });
    const names = lock.keys.map((key) => layout.lock(key));
    expect(names[0]).toBe(`${keyPrefix}{@acme}a}`);
    // What the servers say, not only our own CRC.
    const slots = await Promise.all(names.map((name) => data.cluster('KEYSLOT', name) as Promise<number>));
    expect(new Set(slots).size).toBe(1);
    expect(slots[0]).toBe(clusterKeySlot('@acme'));
    for (const name of names) expect(await data.exists(name)).toBe(1);
    // Another tenant's keys live in another slot family and are not excluded; the same tenant's are.
    const other = await locks.tryAcquire(['a', 'b'], { tenant: 'globex', ttl: 20_000 });
    expect(other).not.toBeNull();
    expect(await locks.tryAcquire('c', { tenant: 'acme' })).toBeNull();
    expect(await Promise.all([lock.release(), other!.release()])).toEqual([true, true]);
  });

  it('by default one tenant’s keys spread over slots, and multi-key locks still work', async () => {
    const locks = lockClient(false);
    const layout = new KeyLayout(keyPrefix);
    const lock: Lock = await locks.acquire(KEYS, { tenant: 'acme', ttl: 20_000 });
    const slots = await Promise.all(lock.keys.map((key) => data.cluster('KEYSLOT', layout.lock(key)) as Promise<number>));
    expect(new Set(slots).size).toBeGreaterThan(3);
    expect(await locks.tryAcquire('order:2', { tenant: 'acme' })).toBeNull();
    expect(await lock.release()).toBe(true);
  });
});

describe('a Redis ACL user per tenant (e2e)', () => {
  const PREFIX = 'acl-tenancy:';
  /** The boot check's probe key; an ACL pattern cannot hold a space, `?` stands for each. */
  const PROBE = '__nestjs-redis-lock?access?probe__';
  let server: RedisServerHandle;
  let admin: Redis;
  const modules: TestingModule[] = [];

  /** The commands the lock scripts call, from their sources. */
  const scriptCommands = (): string[] => {
    const found = new Set<string>();
    for (const script of Object.values(SCRIPTS) as { source: string }[]) {
      for (const match of script.source.matchAll(/redis\.p?call\(\s*['"]([A-Za-z]+)['"]/g)) found.add(match[1]!.toLowerCase());
    }
    return [...found];
  };

  beforeAll(async () => {
    server = await startRedis();
    admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
    // As docs/tenancy.md says: the tenant's keys and channels, every slot's fencing counter, and the
    // boot check's probe key and channel; the commands the store runs.
    await admin.acl(
      'SETUSER',
      'tenant-acme',
      'reset',
      'on',
      '>acme-secret',
      `~${PREFIX}{@acme/*`,
      `~${PREFIX}{*}:f`,
      `~${PREFIX}{${PROBE}}*`,
      `&${PREFIX}{@acme/*`,
      `&${PREFIX}{${PROBE}}:c`,
      ...['evalsha', 'eval', 'publish', 'subscribe', 'unsubscribe', 'ping', 'info', ...scriptCommands()].map((c) => `+${c}`),
    );
  }, 30_000);
  afterAll(async () => {
    await Promise.allSettled(modules.splice(0).map((m) => m.close()));
    admin?.disconnect();
    await stopAll();
  }, 30_000);

  it('locks its own tenant (with notified waiting) and is refused every other key at once', async () => {
    const module = await Test.createTestingModule({
      imports: [
        LockModule.forRoot({
          redis: `redis://tenant-acme:acme-secret@127.0.0.1:${server.port}`,
          keyPrefix: PREFIX,
          wait: 3_000,
          connectTimeout: 1_000,
          tenant: () => 'acme',
        }),
      ],
    })
      .setLogger(false as never)
      .compile();
    modules.push(module);
    // The boot check passes with these rights.
    await module.init();
    const locks = module.get(LockService);

    const held = await locks.acquire('busy', { ttl: 10_000 });
    expect(held.key).toBe('@acme/busy');
    const started = Date.now();
    const waiter = locks.acquire('busy', { ttl: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await held.release();
    const next = await waiter;
    // Woken by the release's message on the tenant's channel, well before the 3 s wait.
    expect(Date.now() - started).toBeLessThan(2_000);
    await next.release();

    for (const tenant of ['globex', null]) {
      const started = Date.now();
      const error = await rejection(locks.acquire('busy', { tenant }));
      expect(error).toBeInstanceOf(LockStoreError);
      expect((error as LockStoreError).code).toBe('NOPERM');
      // The error names the key Redis refused: the other tenant's, or the plain one.
      expect((error as LockStoreError).keys).toEqual([tenant ? '@globex/busy' : 'busy']);
      expect(Date.now() - started).toBeLessThan(2_000);
    }
    expect(await admin.exists(`${PREFIX}{@globex/busy}`, `${PREFIX}{busy}`)).toBe(0);
  });
});
