/**
 * Idempotent calls on a real Redis: `IdempotencyService.run()` and `@Idempotent` in several Nest
 * applications (each with its own connections, as separate processes would have), a crashed first call
 * in a child process, and bad input refused before Redis is touched.
 */
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { HttpException, HttpStatus } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import {
  IdempotencyInFlightError,
  IdempotencyKeyReuseError,
  IdempotencyResultError,
  IdempotencyService,
  IdempotencyStoredError,
  Idempotent,
  LockArgumentError,
  LockModule,
  LockService,
} from 'nestjs-redis-lock';
import { dropKeys, keysMatching, killChild, randomPrefix, redisUrl, spawnFixture, type FixtureChild } from './fixtures/lock-e2e-utils.js';

/** Calls of the decorated methods below, across every app of this process. */
const calls = { transfer: 0 };

@Injectable()
class Transfers {
  @Idempotent((key: string) => `transfer:${key}`, { fingerprint: true })
  async transfer(key: string, amount: number): Promise<{ id: number; amount: number }> {
    calls.transfer++;
    await sleep(100);
    return { id: calls.transfer, amount };
  }
}

describe('idempotent calls (e2e)', () => {
  const keyPrefix = randomPrefix('idem');
  const apps: INestApplicationContext[] = [];
  let admin: Redis;
  let child: FixtureChild | undefined;

  async function boot(): Promise<INestApplicationContext> {
    @Module({ imports: [LockModule.forRoot({ redis: redisUrl(), keyPrefix })], providers: [Transfers] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    apps.push(app);
    return app;
  }

  beforeAll(() => {
    admin = new Redis(redisUrl());
  });
  afterAll(async () => {
    if (child) await killChild(child);
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await dropKeys(redisUrl(), keyPrefix);
    admin.disconnect();
  });

  it('concurrent duplicates run the work once and all get its result, woken within 50 ms of it finishing', async () => {
    const services = await Promise.all([boot(), boot(), boot()]).then((a) => a.map((app) => app.get(IdempotencyService)));
    let runs = 0;
    let finishedAt = 0;
    const work = async () => {
      runs++;
      await sleep(300);
      finishedAt = performance.now();
      return { payment: 'p-1', runs };
    };
    // The first call and three duplicates, one per app and one more: each woken duplicate replays and hands the lease on.
    const duplicates = Array.from({ length: 4 }, (_, i) =>
      services[i % services.length]!.run('pay:concurrent', { wait: 10_000 }, work).then((value) => ({ value, at: performance.now() })),
    );
    const results = await Promise.all(duplicates);
    expect(runs).toBe(1);
    for (const r of results) expect(r.value).toEqual({ payment: 'p-1', runs: 1 });
    // Woken by the release of the first call's lease, not by a timer (the engine's safety-net retry is 100 ms and more).
    const late = Math.max(...results.map((r) => r.at - finishedAt));
    expect(late).toBeLessThan(50);

    // Without idempotency the same duplicates all run the work: what the test above would see if it did nothing.
    runs = 0;
    await Promise.all(Array.from({ length: 4 }, () => work()));
    expect(runs).toBe(4);
  }, 30_000);

  it('a later duplicate gets the stored result without running; the record lives for the result ttl (default 24 h)', async () => {
    const idempotency = (await boot()).get(IdempotencyService);
    let runs = 0;
    const first = await idempotency.run('pay:later', undefined, async () => ({ n: ++runs }));
    const again = await idempotency.run('pay:later', undefined, async () => ({ n: ++runs }));
    expect(first).toEqual({ n: 1 });
    expect(again).toEqual({ n: 1 });
    expect(runs).toBe(1);
    const pttl = await admin.pttl(`${keyPrefix}{idempotency:pay:later}:r`);
    expect(pttl).toBeGreaterThan(23 * 3600_000);
    expect(pttl).toBeLessThanOrEqual(24 * 3600_000);
    // While it ran, the lease was a lock with a short ttl, now released: no 24-hour "in flight" marker.
    expect(await admin.exists(`${keyPrefix}{idempotency:pay:later}`)).toBe(0);
  });

  it('a key reused with different input is refused; the same input replays', async () => {
    const app = await boot();
    const transfers = app.get(Transfers);
    const before = calls.transfer;
    const first = await transfers.transfer('t-1', 100);
    await expect(transfers.transfer('t-1', 100)).resolves.toEqual(first);
    await expect(transfers.transfer('t-1', 999)).rejects.toBeInstanceOf(IdempotencyKeyReuseError);
    expect(calls.transfer - before).toBe(1);

    const idempotency = app.get(IdempotencyService);
    await idempotency.run('pay:fp', { fingerprint: { amount: 5, to: 'a' } }, async () => 'ok');
    // The fingerprint is of the data, not of its key order.
    await expect(idempotency.run('pay:fp', { fingerprint: { to: 'a', amount: 5 } }, async () => 'again')).resolves.toBe('ok');
    await expect(idempotency.run('pay:fp', { fingerprint: { to: 'b', amount: 5 } }, async () => 'again')).rejects.toThrow(
      /already used with different input/,
    );
  });

  it('a failing first call stores nothing and the retry runs; an error chosen by storeErrors is stored and replayed', async () => {
    const idempotency = (await boot()).get(IdempotencyService);
    let runs = 0;
    await expect(
      idempotency.run('pay:fails', undefined, async () => {
        runs++;
        throw new Error('card declined');
      }),
    ).rejects.toThrow('card declined');
    await expect(idempotency.run('pay:fails', undefined, async () => ++runs)).resolves.toBe(2);

    // A storeErrors predicate that throws keeps nothing, and the work's own error reaches the caller.
    const broken = () => {
      throw new Error('bug in the predicate');
    };
    await expect(
      idempotency.run('pay:broken', { storeErrors: broken }, async () => Promise.reject(new Error('work failed'))),
    ).rejects.toThrow('work failed');
    await expect(idempotency.run('pay:broken', undefined, async () => 'retried')).resolves.toBe('retried');

    // An error whose getStatus() throws is still stored (name and message) and the caller gets that error.
    const odd = Object.assign(new Error('odd error'), {
      getStatus: () => {
        throw new Error('no status');
      },
    });
    await expect(idempotency.run('pay:odd', { storeErrors: () => true }, async () => Promise.reject(odd))).rejects.toBe(odd);
    await expect(idempotency.run('pay:odd', undefined, async () => 'must not run')).rejects.toMatchObject({
      originalName: 'Error',
      message: 'odd error',
      status: undefined,
    });

    const storeErrors = (error: unknown) => error instanceof HttpException && error.getStatus() < 500;
    const declined = new HttpException({ code: 'declined' }, HttpStatus.PAYMENT_REQUIRED);
    await expect(idempotency.run('pay:declined', { storeErrors }, async () => Promise.reject(declined))).rejects.toBe(declined);
    const replay = await idempotency.run('pay:declined', { storeErrors }, async () => 'must not run').catch((e: unknown) => e);
    expect(replay).toBeInstanceOf(IdempotencyStoredError);
    expect(replay).toMatchObject({ originalName: 'HttpException', status: 402, response: { code: 'declined' } });
  });

  it('a result that JSON cannot give back is refused at first use, naming where, and nothing is stored', async () => {
    const idempotency = (await boot()).get(IdempotencyService);
    const error = await idempotency
      .run('pay:date', undefined, async () => ({ payment: { id: 1, createdAt: new Date(0) } }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyResultError);
    expect((error as Error).message).toContain('$.payment.createdAt is a Date');
    expect(await admin.exists(`${keyPrefix}{idempotency:pay:date}:r`)).toBe(0);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await expect(idempotency.run('pay:circular', undefined, async () => circular)).rejects.toThrow('$.self is a circular reference');
    await expect(idempotency.run('pay:big', undefined, async () => [1n])).rejects.toThrow('$[0] is a BigInt');
    await expect(idempotency.run('pay:date', undefined, async () => ({ createdAt: '1970-01-01T00:00:00.000Z' }))).resolves.toEqual({
      createdAt: '1970-01-01T00:00:00.000Z',
    });
  });

  it("with inFlight: 'reject', a duplicate of a call still running fails at once with IdempotencyInFlightError", async () => {
    const [a, b] = await Promise.all([boot(), boot()]).then((x) => x.map((app) => app.get(IdempotencyService)));
    let release!: () => void;
    const running = a!.run('pay:busy', undefined, () => new Promise<string>((resolve) => (release = () => resolve('done'))));
    await sleep(100);
    const started = performance.now();
    const error = await b!.run('pay:busy', { inFlight: 'reject' }, async () => 'dup').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IdempotencyInFlightError);
    expect(performance.now() - started).toBeLessThan(1_000);
    // A waiting duplicate with a short wait gives up the same way.
    await expect(b!.run('pay:busy', { wait: 200 }, async () => 'dup')).rejects.toBeInstanceOf(IdempotencyInFlightError);
    release();
    await expect(running).resolves.toBe('done');
    await expect(b!.run('pay:busy', { inFlight: 'reject' }, async () => 'dup')).resolves.toBe('done');
  });

  it("a crashed first call's retry runs once its lease ttl has passed, not after the result ttl", async () => {
    const LEASE = 1_500;
    const idempotency = (await boot()).get(IdempotencyService);
    child = spawnFixture('idempotent-crash-child.ts', {
      REDIS_URL: redisUrl(),
      KEY_PREFIX: keyPrefix,
      IDEMPOTENCY_KEY: 'pay:crash',
      LEASE_MS: String(LEASE),
    });
    await child.message('running', 60_000);
    // Alive past two lease ttls: its heartbeat keeps the call in flight.
    await sleep(2 * LEASE);
    await expect(idempotency.run('pay:crash', { inFlight: 'reject' }, async () => 'retry')).rejects.toBeInstanceOf(
      IdempotencyInFlightError,
    );
    child.process.kill('SIGKILL');
    const killedAt = (await child.exited).at;
    let ran = false;
    const result = await idempotency.run('pay:crash', { wait: 10_000 }, async () => {
      ran = true;
      return 'retry';
    });
    const after = Date.now() - killedAt;
    expect(ran).toBe(true);
    expect(result).toBe('retry');
    expect(after).toBeLessThanOrEqual(LEASE + 1_000);
  }, 90_000);

  it('bad input is refused with a clear error before any Redis command', async () => {
    const idempotency = (await boot()).get(IdempotencyService);
    const before = await keysMatching(admin, `${keyPrefix}*`);
    await expect(idempotency.run('', undefined, async () => 1)).rejects.toThrow(LockArgumentError);
    await expect(idempotency.run('k', { ttl: -5 }, async () => 1)).rejects.toThrow(/ttl.*-5/);
    await expect(idempotency.run('k', { inFlight: 'queue' as 'wait' }, async () => 1)).rejects.toThrow(/inFlight.*"queue"/);
    await expect(idempotency.run('k', { tll: 5 } as never, async () => 1)).rejects.toThrow(/tll.*ttl/);
    await expect(idempotency.run('k', { fingerprint: { n: 1n } }, async () => 1)).rejects.toThrow(/fingerprint.*\$\.n is a BigInt/);
    await expect(idempotency.run('k', undefined, 'not a function' as never)).rejects.toThrow(/fn/);
    await expect(idempotency.run('x'.repeat(1020), undefined, async () => 1)).rejects.toThrow(/key must be at most 1012 characters/);
    expect(() => Idempotent('k', { wait: 'soon' as never })).toThrow(/wait.*"soon"/);
    expect(() => Idempotent(42 as never)).toThrow(LockArgumentError);
    expect(await keysMatching(admin, `${keyPrefix}*`)).toEqual(before);
  });

  it('idempotency keys never share a lease with a lock of the same name', async () => {
    const app = await boot();
    const locks = app.get(LockService);
    const lock = await locks.acquire('pay:same-name', { ttl: 5_000 });
    try {
      await expect(app.get(IdempotencyService).run('pay:same-name', { inFlight: 'reject' }, async () => 'ran')).resolves.toBe('ran');
    } finally {
      await lock.release();
    }
  });
});
