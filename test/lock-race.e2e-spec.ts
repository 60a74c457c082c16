/**
 * Mutual exclusion against a real Redis (REDIS_URL): a non-atomic read-modify-write counter,
 * incremented concurrently by several Nest apps, first in one process, then in worker processes.
 * With @WithLock the count is exact; the same code without the lock loses updates (the control).
 */
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { LockService } from 'nestjs-redis-lock';
import { CounterAppModule, CounterService, counterKey, runIncrements } from './fixtures/lock-counter.module.js';
import { dropKeys, type FixtureChild, killChild, randomPrefix, redisUrl, spawnFixture, exitWithin } from './fixtures/lock-e2e-utils.js';

const APPS = 3;
/** Increments per app (in-process) and per worker process. */
const N = 40;
/** In-flight increments per worker process. */
const WORKER_CONCURRENCY = 8;

describe('lock race (e2e)', () => {
  let redis: Redis;
  const prefixes: string[] = [];

  beforeAll(() => {
    redis = new Redis(redisUrl());
  });

  afterAll(async () => {
    await dropKeys(redisUrl(), ...prefixes);
    await redis.quit();
  });

  const counterOf = async (keyPrefix: string): Promise<number> =>
    Number((await redis.get(counterKey({ redisUrl: redisUrl(), keyPrefix }))) ?? 0);

  describe('three apps in one process', () => {
    /** Boots APPS app contexts on one fresh prefix, runs N concurrent increments in each, returns the final count. */
    async function race(locked: boolean): Promise<{ count: number; failed: number; firstError?: string; acquiredPerApp: number[] }> {
      const keyPrefix = randomPrefix(locked ? 'race-in' : 'race-in-nolock');
      prefixes.push(keyPrefix);
      const apps: INestApplicationContext[] = [];
      try {
        for (let i = 0; i < APPS; i++) {
          apps.push(
            await NestFactory.createApplicationContext(CounterAppModule.forRoot({ redisUrl: redisUrl(), keyPrefix }), { logger: false }),
          );
        }
        // Each app's @WithLock calls must go through that app's own LockService.
        const acquiredPerApp = apps.map(() => 0);
        apps.forEach((app, i) => app.get(LockService).on('acquired', () => acquiredPerApp[i]!++));
        const results = await Promise.all(apps.map((app) => runIncrements(app.get(CounterService), N, N, locked)));
        return {
          acquiredPerApp,
          count: await counterOf(keyPrefix),
          failed: results.reduce((sum, r) => sum + r.failed, 0),
          firstError: results.find((r) => r.firstError)?.firstError,
        };
      } finally {
        await Promise.all(apps.map((app) => app.close()));
      }
    }

    it('with @WithLock: the count is exact', async () => {
      const { count, failed, firstError, acquiredPerApp } = await race(true);
      expect({ failed, firstError }).toEqual({ failed: 0, firstError: undefined });
      expect(acquiredPerApp).toEqual(Array.from({ length: APPS }, () => N));
      expect(count).toBe(APPS * N);
    }, 60_000);

    it('without the lock: updates are lost (the race is real)', async () => {
      const { count, failed, acquiredPerApp } = await race(false);
      expect(failed).toBe(0);
      expect(acquiredPerApp).toEqual(Array.from({ length: APPS }, () => 0));
      expect(count).toBeLessThan(APPS * N);
    }, 60_000);
  });

  describe('three worker processes', () => {
    const children: FixtureChild[] = [];

    afterEach(async () => {
      await Promise.all(children.splice(0).map(killChild));
    });

    async function race(locked: boolean) {
      const keyPrefix = randomPrefix(locked ? 'race-proc' : 'race-proc-nolock');
      prefixes.push(keyPrefix);
      const env = {
        REDIS_URL: redisUrl(),
        KEY_PREFIX: keyPrefix,
        COUNT: String(N),
        CONCURRENCY: String(WORKER_CONCURRENCY),
        LOCKED: locked ? '1' : '0',
      };
      const workers = Array.from({ length: APPS }, () => spawnFixture('lock-counter-worker.ts', env));
      children.push(...workers);
      // Boot (slow: each compiles the fixture), then start all at once so the increments overlap.
      await Promise.all(workers.map((w) => w.message('ready', 60_000)));
      for (const w of workers) w.send('go');
      const done = await Promise.all(
        workers.map((w) => w.message<{ ok: number; failed: number; firstError?: string; ms: number }>('done', 60_000)),
      );
      await Promise.all(workers.map((w) => w.message('closed', 20_000)));
      // After app.close() each worker must leave on its own: nothing of the library keeps it alive.
      const exits = await Promise.all(workers.map((w) => exitWithin(w, 10_000)));
      return { done, exits, count: await counterOf(keyPrefix) };
    }

    it('with @WithLock: the count is exact, and every worker exits on its own after app.close()', async () => {
      const { done, exits, count } = await race(true);
      expect(done.map((d) => ({ ok: d.ok, failed: d.failed, firstError: d.firstError }))).toEqual(
        Array.from({ length: APPS }, () => ({ ok: N, failed: 0, firstError: undefined })),
      );
      expect(exits.map((e) => e?.code)).toEqual(Array.from({ length: APPS }, () => 0));
      expect(count).toBe(APPS * N);
    }, 120_000);

    it('without the lock: updates are lost', async () => {
      const { done, exits, count } = await race(false);
      expect(done.map((d) => d.ok)).toEqual(Array.from({ length: APPS }, () => N));
      expect(exits.map((e) => e?.code)).toEqual(Array.from({ length: APPS }, () => 0));
      expect(count).toBeLessThan(APPS * N);
    }, 120_000);
  });
});
