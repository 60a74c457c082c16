import 'reflect-metadata';
import { Controller, Get, Injectable, Module, SetMetadata, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { PATH_METADATA, METHOD_METADATA } from '@nestjs/common/constants.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { startRedis, stopAll, type RedisServerHandle } from '../../../../test/helpers/redis-server.js';
import { LockArgumentError, LockNotInitializedError, LockTimeoutError } from '../core/errors.js';
import { LockModule } from '../lock.module.js';
import { LockService } from '../lock.service.js';
import { currentLock } from '../core/context.js';
import { WithLock } from './with-lock.decorator.js';

const ABOVE = 'test:above';
const BELOW = 'test:below';

@Injectable()
class Accounts {
  calls: string[] = [];

  @SetMetadata(ABOVE, 'a')
  @WithLock(
    function (this: Accounts, id: string) {
      this.calls.push(`key:${id}`);
      return `acct:${id}`;
    },
    2000,
    1000,
  )
  @SetMetadata(BELOW, 'b')
  async credit(id: string, amount: number, extra?: string): Promise<string> {
    this.calls.push(`run:${id}:${amount}:${extra}`);
    return `${id}+${amount}:${currentLock()?.key}`;
  }

  @WithLock('fixed', 2000, 0)
  async fail(error: Error): Promise<never> {
    throw error;
  }

  @WithLock('busy', 2000, 50, { onTimeout: (error, tag: string) => `fallback:${tag}:${error.name}` })
  async withFallback(tag: string): Promise<string> {
    return `ran:${tag}`;
  }

  @WithLock((job: { data: { id: string } }) => `job:${job.data.id}`, 2000, 50, { onTimeout: 'requeue', requeueDelay: 1234 })
  async process(job: { data: { id: string } }, token?: string): Promise<string> {
    return `processed:${job.data.id}:${token}`;
  }

  @WithLock(() => ['', 'x'])
  async badKey(): Promise<void> {}

  @WithLock('two-a', 2000, 0)
  @WithLock('two-b', 2000, 0)
  async twoLocks(): Promise<string[]> {
    return [...(currentLock()?.keys ?? [])];
  }

  @WithLock('outer', 2000, 0)
  async outer(): Promise<string> {
    return this.inner();
  }

  @WithLock('outer', 2000, 0)
  async inner(): Promise<string> {
    return `inner:${currentLock()?.key}`;
  }
}

@Controller('things')
class ThingsController {
  @Get(':id')
  @WithLock('route', 2000, 100)
  async find(): Promise<string> {
    return 'thing';
  }
}

const moduleFor = (url: string, keyPrefix: string) => {
  @Module({ imports: [LockModule.forRoot({ redis: url, keyPrefix })], providers: [Accounts], controllers: [ThingsController] })
  class AppModule {}
  return AppModule;
};

describe('@WithLock', () => {
  let app: INestApplicationContext;
  let redis: Redis;
  const prefix = `wl${Math.random().toString(36).slice(2, 8)}:`;

  beforeAll(async () => {
    app = await NestFactory.createApplicationContext(moduleFor(process.env.REDIS_URL!, prefix), { logger: false });
    redis = new Redis(process.env.REDIS_URL!);
  });
  afterAll(async () => {
    await app.close();
    await redis.quit();
  });

  it('keeps the method name, length and metadata from decorators above and below', () => {
    const fn = Accounts.prototype.credit;
    expect(fn.name).toBe('credit');
    expect(fn.length).toBe(3);
    expect(Reflect.getMetadata(ABOVE, fn)).toBe('a');
    expect(Reflect.getMetadata(BELOW, fn)).toBe('b');
    const route = ThingsController.prototype.find;
    expect(Reflect.getMetadata(PATH_METADATA, route)).toBe(':id');
    expect(Reflect.getMetadata(METHOD_METADATA, route)).toBeDefined();
  });

  it('locks on the key built from the arguments with `this` the instance, passing every argument', async () => {
    const accounts = app.get(Accounts);
    const service = app.get(LockService);
    let heldDuring: boolean | undefined;
    const spy = service.on('acquired', ({ keys }) => void (heldDuring = keys[0] === 'acct:7'));
    expect(await accounts.credit('7', 5, 'x')).toBe('7+5:acct:7');
    spy();
    expect(heldDuring).toBe(true);
    expect(accounts.calls).toEqual(['key:7', 'run:7:5:x']);
    expect(await redis.exists(`${prefix}{acct:7}`)).toBe(0);
  });

  it("passes the method's own error through unchanged and releases", async () => {
    const boom = new TypeError('insufficient funds');
    await expect(app.get(Accounts).fail(boom)).rejects.toBe(boom);
    expect(await app.get(LockService).isLocked('fixed')).toBe(false);
  });

  it('rejects with LockTimeoutError when the lock stays busy', async () => {
    const held = await app.get(LockService).acquire('route', { ttl: 5000 });
    await expect(app.get(ThingsController).find()).rejects.toBeInstanceOf(LockTimeoutError);
    await held.release();
  });

  it('onTimeout: a function returns its result, with the error and the arguments', async () => {
    const held = await app.get(LockService).acquire('busy', { ttl: 5000 });
    expect(await app.get(Accounts).withFallback('t')).toBe('fallback:t:LockTimeoutError');
    await held.release();
    expect(await app.get(Accounts).withFallback('t')).toBe('ran:t');
  });

  it("onTimeout: 'requeue' moves a BullMQ job to delayed with its token and throws DelayedError", async () => {
    const held = await app.get(LockService).acquire('job:9', { ttl: 5000 });
    const moves: [number, string | undefined][] = [];
    const job = { id: '1', data: { id: '9' }, moveToDelayed: async (at: number, token?: string) => void moves.push([at, token]) };
    const before = Date.now();
    const requeued: unknown[] = [];
    const off = app.get(LockService).on('requeued', (event) => void requeued.push(event));
    const error = await app
      .get(Accounts)
      .process(job, 'worker-token')
      .catch((e: Error) => e);
    off();
    expect(requeued).toEqual([{ keys: ['job:9'], delay: 1234, jobId: '1', label: 'Accounts.process' }]);
    expect((error as Error).name).toBe('DelayedError');
    expect(moves).toHaveLength(1);
    expect(moves[0]![1]).toBe('worker-token');
    expect(moves[0]![0]).toBeGreaterThanOrEqual(before + 1234);
    await held.release();
    expect(await app.get(Accounts).process(job, 'tk')).toBe('processed:9:tk');
  });

  it('is re-entrant: a locked method calling another on the same key does not wait', async () => {
    expect(await app.get(Accounts).outer()).toBe('inner:outer');
  });

  it('two lock decorators on one method take both locks', async () => {
    const service = app.get(LockService);
    const taken: string[] = [];
    const off = service.on('acquired', ({ keys }) => void taken.push(...keys));
    expect(await app.get(Accounts).twoLocks()).toEqual(['two-b']);
    off();
    expect(taken.sort()).toEqual(['two-a', 'two-b']);
  });

  it('rejects a key function result that is not a key', async () => {
    await expect(app.get(Accounts).badKey()).rejects.toThrow('The key function of @WithLock() on Accounts.badKey');
  });

  it('rejects bad decorator arguments at declaration', () => {
    expect(() => WithLock('', 10)).toThrow(LockArgumentError);
    expect(() => WithLock(42 as never)).toThrow('needs a key string or a key function');
    expect(() => WithLock('k', -5)).toThrow('ttl must be a positive finite number');
    expect(() => WithLock('k', 100, Infinity)).toThrow('wait must be a finite number');
    expect(() => WithLock('k', 100, 0, { onTimeout: 'retry' as never })).toThrow('onTimeout must be');
    expect(() => WithLock('k', 100, 0, { requeueDelay: -1 })).toThrow('requeueDelay must be');
  });

  it('tells what to do when called on an instance no app with LockModule created', async () => {
    await app.close();
    try {
      await expect(new Accounts().credit('1', 1)).rejects.toBeInstanceOf(LockNotInitializedError);
      await expect(new Accounts().credit('1', 1)).rejects.toThrow('Import LockModule.forRoot()');
    } finally {
      app = await NestFactory.createApplicationContext(moduleFor(process.env.REDIS_URL!, prefix), { logger: false });
    }
  });
});

describe('@WithLock with two Nest apps in one process', () => {
  let servers: RedisServerHandle[];
  let apps: INestApplicationContext[];

  beforeAll(async () => {
    servers = await Promise.all([startRedis(), startRedis()]);
    apps = await Promise.all(servers.map((s) => NestFactory.createApplicationContext(moduleFor(s.url, 'two:'), { logger: false })));
  });
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
    await stopAll();
  });

  it('each app locks on its own Redis', async () => {
    const [first, second] = apps as [INestApplicationContext, INestApplicationContext];
    const clients = servers.map((s) => new Redis(s.url));
    try {
      // Hold the key on the first app's Redis: the second app is not affected, the first one is.
      const held = await first.get(LockService).acquire('acct:1', { ttl: 5000 });
      expect(await second.get(Accounts).credit('1', 1)).toBe('1+1:acct:1');
      expect(await clients[0]!.exists('two:{acct:1}')).toBe(1);
      expect(await clients[1]!.exists('two:{acct:1}')).toBe(0);
      const started = Date.now();
      const pending = first.get(Accounts).credit('1', 2);
      await sleep(100);
      await held.release();
      expect(await pending).toBe('1+2:acct:1');
      expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    } finally {
      await Promise.all(clients.map((c) => c.quit()));
    }
  });
});
