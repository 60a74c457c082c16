/**
 * Fixtures shared by test/payments-*.e2e-spec.ts: configs with private key and queue prefixes,
 * apps built from AppModule, bounded waiting and cleanup. Redis comes from REDIS_URL.
 */
import { getQueueToken } from '@nestjs/bullmq';
import type { INestApplication, INestApplicationContext } from '@nestjs/common';
import type { AbstractHttpAdapter } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppModule } from '../src/app.module.js';
import { PAYMENTS_QUEUE, type PaymentsConfig } from '../src/config.js';

export function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL is not set: run the e2e tests through `npm test`');
  return url;
}

/** A config whose keys and queue no other test touches. */
export function testConfig(overrides: Partial<PaymentsConfig> = {}): PaymentsConfig {
  const id = randomBytes(4).toString('hex');
  return {
    redisUrl: redisUrl(),
    keyPrefix: `test-${id}:`,
    queuePrefix: `test-${id}-bull`,
    role: 'all',
    lock: true,
    applyDelayMs: 5,
    receiptDelayMs: 0,
    ...overrides,
  };
}

/** An HTTP app, initialised but not listening: use `app.getHttpServer()` with supertest. */
export async function createHttpApp(config: PaymentsConfig, adapter?: AbstractHttpAdapter): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({ imports: [AppModule.forRoot(config)] }).compile();
  const app = adapter ? moduleRef.createNestApplication(adapter) : moduleRef.createNestApplication();
  await app.init();
  return app;
}

/** A worker-only app context: its BullMQ worker runs from `init()` until `close()`. */
export async function createWorkerApp(config: PaymentsConfig): Promise<INestApplicationContext> {
  const moduleRef = await Test.createTestingModule({ imports: [AppModule.forRoot({ ...config, role: 'worker' })] }).compile();
  return moduleRef.init();
}

export function queueOf(app: INestApplicationContext): Queue {
  return app.get<Queue>(getQueueToken(PAYMENTS_QUEUE), { strict: false });
}

/** Polls `check` until it returns a truthy value, at most `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Waits until `count` jobs are completed or failed; returns the counts. */
export async function waitForJobs(queue: Queue, count: number, timeoutMs = 30_000): Promise<{ completed: number; failed: number }> {
  return waitFor(
    `${count} finished jobs`,
    async () => {
      const { completed = 0, failed = 0 } = await queue.getJobCounts('completed', 'failed');
      return completed + failed >= count ? { completed, failed } : undefined;
    },
    timeoutMs,
    100,
  );
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function inPool<T, R>(limit: number, items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]!);
      }
    }),
  );
  return results;
}

/** Deletes every key of a test config (its accounts, stats, locks and queue). */
export async function dropKeys(config: PaymentsConfig): Promise<void> {
  const redis = new Redis(config.redisUrl);
  try {
    for (const pattern of [`${config.keyPrefix}*`, `${config.queuePrefix}:*`]) {
      let cursor = '0';
      for (let i = 0; i < 1_000; i++) {
        const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        if (keys.length) await redis.unlink(...keys);
        cursor = nextCursor;
        if (cursor === '0') break;
      }
    }
  } finally {
    await redis.quit();
  }
}
