/**
 * Redis goes away under a running app (its own private redis-server, SIGKILLed): acquisitions
 * must fail fast with the library's own errors, never hang, work again after a restart, and the
 * app must close whether Redis is up or down.
 */
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, LockService, LockTimeoutError, LockUnavailableError } from 'nestjs-redis-lock';
import { startRedis, type RedisServerHandle } from './helpers/redis-server.js';
import { randomPrefix } from './fixtures/lock-e2e-utils.js';

const WAIT = 300;
const CONNECT_TIMEOUT = 500;
/** Generous slack for a slow shared machine; still far below "hangs". */
const MARGIN = 1_500;

/** Settles `pending` and measures it; rejects if it takes longer than `limitMs` (so a hang fails the test). */
async function settle<T>(pending: Promise<T>, limitMs: number): Promise<{ value?: T; error?: unknown; ms: number }> {
  const start = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${limitMs} ms`)), limitMs);
  });
  try {
    const value = await Promise.race([pending, hung]);
    return { value, ms: Date.now() - start };
  } catch (error) {
    if ((error as Error).message === `still pending after ${limitMs} ms`) throw error;
    return { error, ms: Date.now() - start };
  } finally {
    clearTimeout(timer);
  }
}

describe('Redis down (e2e)', () => {
  let server: RedisServerHandle;
  const apps: INestApplicationContext[] = [];

  beforeAll(async () => {
    server = await startRedis();
  }, 30_000);

  afterAll(async () => {
    await Promise.all(apps.splice(0).map((app) => settle(app.close(), 10_000)));
    await server?.stop();
  }, 30_000);

  const boot = async (): Promise<LockService> => {
    const app = await NestFactory.createApplicationContext(
      LockModule.forRoot({ redis: server.url, keyPrefix: randomPrefix('down'), connectTimeout: CONNECT_TIMEOUT }),
      { logger: false },
    );
    apps.push(app);
    return app.get(LockService);
  };

  it('rejects with LockUnavailableError/LockTimeoutError within wait + connectTimeout while Redis is dead, and works after a restart', async () => {
    const locks = await boot();
    const held = await locks.acquire('k', { ttl: 10_000 });
    await held.release();

    await server.kill();
    // Several attempts: the first hits a dropped connection, later ones ioredis' reconnect loop and offline queue.
    for (let i = 0; i < 3; i++) {
      const outcome = await settle(locks.acquire('k', { wait: WAIT }), 20_000);
      expect(outcome.value).toBeUndefined();
      expect(outcome.error).toBeInstanceOf(Error);
      expect([LockUnavailableError.name, LockTimeoutError.name]).toContain((outcome.error as Error).name);
      expect(outcome.error instanceof LockUnavailableError || outcome.error instanceof LockTimeoutError).toBe(true);
      expect(outcome.ms).toBeLessThan(WAIT + CONNECT_TIMEOUT + MARGIN);
    }
    // A waiter whose lock would be free: still bounded by the same budget.
    const waited = await settle(
      locks.using('other', { wait: WAIT }, () => 'ran'),
      20_000,
    );
    expect(waited.error).toBeInstanceOf(LockUnavailableError);
    expect(waited.ms).toBeLessThan(WAIT + CONNECT_TIMEOUT + MARGIN);

    await server.restart();
    // ioredis reconnects with a backoff (up to 2 s): a wait that covers it gets the lock on its first try.
    const back = await settle(locks.acquire('k', { ttl: 10_000, wait: 5_000 }), 20_000);
    expect(back.error).toBeUndefined();
    const lock = back.value!;
    expect(lock.isHeld).toBe(true);
    // Waiting works again too (pub/sub): a second acquirer gets the lock as soon as it is released.
    const second = locks.acquire('k', { ttl: 10_000, wait: 5_000 });
    setTimeout(() => void lock.release(), 200);
    const next = await settle(second, 20_000);
    expect(next.error).toBeUndefined();
    expect(next.value!.fencingToken).toBeGreaterThan(lock.fencingToken);
    await next.value!.release();
  }, 60_000);

  it('a waiter rides out a short outage within its wait instead of failing on the first error', async () => {
    const locks = await boot();
    await locks.acquire('k3', { ttl: 10_000 });
    const waiter = settle(locks.acquire('k3', { wait: 10_000 }), 20_000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await server.kill();
    // Long enough for several failed polls (ioredis gives up on a command after 2 reconnect tries).
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    // The restarted server is empty (no persistence): the old holder's lock is gone.
    await server.restart();
    const outcome = await waiter;
    expect(outcome.error).toBeUndefined();
    expect(outcome.value!.isHeld).toBe(true);
    await outcome.value!.release();
  }, 60_000);

  it('closes the app promptly while Redis is down, even with a lock held and a waiter pending', async () => {
    const locks = await boot();
    const held = await locks.acquire('k2', { ttl: 10_000, autoExtend: true });
    const waiter = locks.acquire('k2', { wait: 30_000 }).then(
      () => 'acquired',
      (error: Error) => error.name,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    await server.kill();

    const app = apps.pop()!;
    const closed = await settle(app.close(), 15_000);
    expect(closed.error).toBeUndefined();
    expect(closed.ms).toBeLessThan(CONNECT_TIMEOUT + MARGIN * 2);
    // A failed poll against the dead Redis does not end the wait; the shutdown does.
    const ended = await settle(waiter, 5_000);
    expect(ended.value).toBe('LockShutdownError');
    expect(held.isHeld).toBe(false);
  }, 60_000);
});
