import 'reflect-metadata';
import { Inject, Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { LockArgumentError, LockStoreError } from './core/errors.js';
import { LockModule } from './lock.module.js';
import { createLockClient, type LockOptionsFactory } from './lock.module-definition.js';
import { LockService } from './lock.service.js';
import type { LockModuleOptions } from './interfaces/lock-options.interface.js';
import { startRedis } from '../../../test/helpers/redis-server.js';

const boot = async (imports: unknown[]) => {
  @Module({ imports: imports as never[] })
  class AppModule {}
  return NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false });
};

describe('LockModule', () => {
  const url = process.env.REDIS_URL!;

  it('forRoot with a URL: locks on that Redis and closes its own connection on shutdown', async () => {
    const app = await boot([LockModule.forRoot({ redis: url, keyPrefix: 'mod1:' })]);
    const locks = app.get(LockService);
    const lock = await locks.acquire('k', { ttl: 5000 });
    const admin = new Redis(url);
    expect(await admin.get('mod1:{k}')).toBe(`${lock.token}:${lock.fencingToken}`);
    await app.close();
    // shutdown released the held lock
    expect(await admin.exists('mod1:{k}')).toBe(0);
    await admin.quit();
  });

  it('a URL with an ACL user, a password and a db number is honoured', async () => {
    const server = await startRedis({ args: ['--user', 'locker', 'on', '>s3cret', '~*', '&*', '+@all'] });
    try {
      const app = await boot([LockModule.forRoot({ redis: `redis://locker:s3cret@127.0.0.1:${server.port}/3`, keyPrefix: 'auth:' })]);
      const lock = await app.get(LockService).acquire('k');
      const admin = new Redis({ port: server.port, host: '127.0.0.1', username: 'locker', password: 's3cret', db: 3 });
      expect(await admin.exists('auth:{k}')).toBe(1);
      await admin.select(0);
      expect(await admin.exists('auth:{k}')).toBe(0);
      await lock.release();
      await app.close();
      await admin.quit();
      // a wrong password fails the boot at once, naming the cause (not a hang, not "unavailable")
      const bad = await boot([LockModule.forRoot({ redis: `redis://locker:wrong@127.0.0.1:${server.port}/3`, connectTimeout: 300 })]).catch(
        (e: unknown) => e,
      );
      expect(bad).toBeInstanceOf(LockStoreError);
      expect((bad as LockStoreError).code).toBe('AUTH');
      expect(String((bad as Error).message)).not.toContain('wrong');
    } finally {
      await server.stop();
    }
  });

  it('forRoot() with no argument uses the defaults (checked at compile time too)', () => {
    const definition = LockModule.forRoot();
    expect(definition.module).toBe(LockModule);
    expect(definition.global).toBe(false);
  });

  it('forRootAsync with useClass (a LockOptionsFactory), useExisting and extraProviders', async () => {
    const SETTINGS = 'SETTINGS';
    @Injectable()
    class LockConfig implements LockOptionsFactory {
      constructor(@Inject(SETTINGS) private readonly settings: { prefix: string }) {}
      createLockOptions(): LockModuleOptions {
        return { redis: url, keyPrefix: this.settings.prefix };
      }
    }
    // useClass: the factory is instantiated inside LockModule, so what it injects comes in as extraProviders.
    const viaClass = await boot([
      LockModule.forRootAsync({ useClass: LockConfig, extraProviders: [{ provide: SETTINGS, useValue: { prefix: 'mod5:' } }] }),
    ]);
    const lock = await viaClass.get(LockService).acquire('k');
    const admin = new Redis(url);
    try {
      expect(await admin.exists('mod5:{k}')).toBe(1);
      await lock.release();
      await viaClass.close();

      // useExisting: a provider of an imported module.
      @Module({ providers: [LockConfig, { provide: SETTINGS, useValue: { prefix: 'mod6:' } }], exports: [LockConfig] })
      class ConfigModule {}
      const viaExisting = await boot([LockModule.forRootAsync({ imports: [ConfigModule], useExisting: LockConfig })]);
      const again = await viaExisting.get(LockService).acquire('k');
      expect(await admin.exists('mod6:{k}')).toBe(1);
      await again.release();
      await viaExisting.close();
    } finally {
      await admin.quit();
    }
  });

  it('forRootAsync with inject and isGlobal', async () => {
    const CONFIG = 'CONFIG';
    @Module({ providers: [{ provide: CONFIG, useValue: { url, prefix: 'mod2:' } }], exports: [CONFIG] })
    class ConfigModule {}
    @Injectable()
    class UsesLocks {
      constructor(readonly locks: LockService) {}
    }
    @Module({ providers: [UsesLocks] })
    class FeatureModule {}
    const app = await boot([
      LockModule.forRootAsync({
        isGlobal: true,
        imports: [ConfigModule],
        inject: [CONFIG],
        useFactory: (config: { url: string; prefix: string }): LockModuleOptions => ({ redis: config.url, keyPrefix: config.prefix }),
      }),
      FeatureModule,
    ]);
    const lock = await app.get(UsesLocks).locks.acquire('k');
    expect(await lock.release()).toBe(true);
    await app.close();
  });

  it('does not close an ioredis client it was given', async () => {
    const client = new Redis(url);
    const app = await boot([LockModule.forRoot({ redis: client, keyPrefix: 'mod3:' })]);
    await (await app.get(LockService).acquire('k')).release();
    await app.close();
    expect(await client.ping()).toBe('PONG');
    await client.quit();
  });

  it('works with a client that has its own ioredis keyPrefix (keys and wake-ups)', async () => {
    const client = new Redis(url, { keyPrefix: 'app:' });
    const app = await boot([LockModule.forRoot({ redis: client, keyPrefix: 'mod4:' })]);
    const locks = app.get(LockService);
    const admin = new Redis(url);
    try {
      const gaps: number[] = [];
      for (let round = 0; round < 3; round++) {
        const held = await locks.acquire('k', { ttl: 10_000 });
        expect(await admin.exists('app:mod4:{k}')).toBe(1);
        const waiting = locks.acquire('k', { wait: 5_000 });
        await new Promise((resolve) => setTimeout(resolve, 150 + round * 40));
        const releasedAt = Date.now();
        await held.release();
        await (await waiting).release();
        gaps.push(Date.now() - releasedAt);
      }
      // the grant reached the waiter through pub/sub, not through its 50-1000 ms safety-net retry
      expect(Math.max(...gaps)).toBeLessThan(50);
    } finally {
      await app.close();
      await admin.quit();
      await client.quit();
    }
  });

  it('refuses an ioredis Cluster inside a quorum, at boot', async () => {
    const fake = { isCluster: true, evalsha: () => undefined, duplicate: () => undefined };
    const error = await boot([LockModule.forRoot({ redis: [url, url, fake as never] })]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockArgumentError);
    expect((error as Error).message).toMatch(/redis\[2\].*a quorum is made of independent servers/s);
  });

  it("store: 'memory' works without Redis", async () => {
    const app = await boot([LockModule.forRoot({ store: 'memory' })]);
    const locks = app.get(LockService);
    const lock = await locks.acquire('k');
    expect(await locks.tryAcquire('k')).toBeNull();
    await lock.release();
    await app.close();
  });

  it.each<[string, LockModuleOptions, string]>([
    ['ttl', { ttl: -1 }, 'LockModule option "ttl" must be a number of milliseconds from 10 to 2147483647, got -1.'],
    ['ttl too short', { ttl: 2 }, 'LockModule option "ttl" must be a number of milliseconds from 10 to 2147483647, got 2.'],
    [
      'ttl too long',
      { ttl: 2 ** 53 },
      'LockModule option "ttl" must be a number of milliseconds from 10 to 2147483647, got 9007199254740992.',
    ],
    ['wait', { wait: Number.NaN }, 'LockModule option "wait" must be a number of milliseconds from 0 to 2147483647, got NaN.'],
    [
      'connectTimeout',
      { connectTimeout: 0 },
      'LockModule option "connectTimeout" must be a number of milliseconds from 1 to 2147483647, got 0.',
    ],
    ['keyPrefix', { keyPrefix: 'a{b}' }, 'LockModule option "keyPrefix" must be a string of at most 256 characters without { or }'],
    ['redis', { redis: 'http://localhost:6379' }, 'is not a valid Redis URL ("http://localhost:6379"): the scheme is "http:"'],
    ['redis db', { redis: 'redis://localhost:6379/abc' }, 'the database "abc" is not a number'],
    [
      'store',
      { store: 'postgres' as never },
      `LockModule option "store" must be 'redis', 'memory' or a LockStore instance, got "postgres".`,
    ],
    ['typo', { tll: 5 } as never, 'LockModule option "tll" is not a LockModule option, got 5.'],
    ['onLockLost', { onLockLost: 'retry' as never }, `LockModule option "onLockLost" must be 'continue' or 'throw', got "retry".`],
  ])('fails at boot on a bad %s, naming the option and the value', async (_name, options, message) => {
    const error = await boot([LockModule.forRoot(options)]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockArgumentError);
    expect((error as Error).message).toContain(message);
  });
});

describe('deployment options are checked at boot, before any connection', () => {
  it.each([
    [
      'two nodes',
      { redis: ['redis://127.0.0.1:1', 'redis://127.0.0.1:2'] },
      /"redis" must be one Redis, or 3 or more independent nodes.*got "2 nodes"/s,
    ],
    ['a bad URL among the nodes', { redis: ['redis://127.0.0.1:1', 'redis://127.0.0.1:2', 'http://x'] }, /scheme is "http:"/],
    [
      'replicaAck with a quorum',
      { redis: ['redis://127.0.0.1:1', 'redis://127.0.0.1:2', 'redis://127.0.0.1:3'], replicaAck: { replicas: 1, timeout: 10 } },
      /replicaAck.*not for a quorum/s,
    ],
    [
      'replicaAck without replicas',
      { replicaAck: { replicas: 0, timeout: 10 } },
      /replicaAck\.replicas" must be a whole number of replicas from 1 to 64, got 0/s,
    ],
    ['replicaAck with a fractional timeout', { replicaAck: { replicas: 1, timeout: 1.5 } }, /replicaAck\.timeout.*1\.5/s],
    [
      'replicaAck with an unknown field',
      { replicaAck: { replicas: 1, timeout: 10, wait: 1 } },
      /replicaAck.*must be \{ replicas: number, timeout: number \}/s,
    ],
    ['an empty cluster seed list', { redis: { cluster: [] } }, /redis\.cluster.*non-empty array/s],
    [
      'cluster seeds mixing redis:// and rediss://',
      { redis: { cluster: ['redis://127.0.0.1:7000', 'rediss://127.0.0.1:7001'] } },
      /redis\.cluster.*must not mix redis:\/\/ and rediss:\/\/ seeds/s,
    ],
    ['a cluster seed that is not a URL', { redis: { cluster: ['redis://127.0.0.1:7000', 42] } }, /redis\.cluster\[1\].*42/s],
    [
      'replicaAck with the memory store',
      { store: 'memory', replicaAck: { replicas: 1, timeout: 10 } },
      /replicaAck.*only for the Redis store/s,
    ],
    [
      'the same server twice in a quorum',
      { redis: ['redis://127.0.0.1:7001', 'redis://127.0.0.1:7002', 'redis://127.0.0.1:7001/0'] },
      /"redis\[2\]".*same server as redis\[0\].*127\.0\.0\.1:7001/s,
    ],
    [
      'the same server twice in a quorum, as URL and options',
      { redis: ['redis://127.0.0.1:7001', { host: '127.0.0.1', port: 7002 }, { host: '127.0.0.1', port: 7002, password: 's3cret' }] },
      /"redis\[2\]".*same server as redis\[1\]/s,
    ],
    [
      'a Cluster keyPrefix with a lone brace',
      { redis: { cluster: ['redis://127.0.0.1:7000'], options: { keyPrefix: 'app{' } } },
      /redis\.options\.keyPrefix.*one whole hash tag.*got "app\{"/s,
    ],
    [
      'a Cluster redisOptions keyPrefix with two tags',
      { redis: { cluster: ['redis://127.0.0.1:7000'], options: { redisOptions: { keyPrefix: '{a}{b}' } } } },
      /redis\.options\.redisOptions\.keyPrefix.*\{a\}\{b\}/s,
    ],
  ])('%s', (_name, options, message) => {
    let thrown: unknown;
    try {
      createLockClient(options as LockModuleOptions);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(LockArgumentError);
    expect((thrown as Error).message).toMatch(message);
  });
});
