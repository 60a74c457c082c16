/**
 * @Idempotent on a @nestjs/bullmq processor, keyed by the job's data (a webhook event id): duplicated
 * jobs (the same event delivered three times, picked up by two worker apps at once) apply once and
 * every job returns the first run's result. The control queue runs the same work without @Idempotent
 * and applies every duplicate.
 */
import { BullModule, getQueueToken, Processor, WorkerHost } from '@nestjs/bullmq';
import { type DynamicModule, type INestApplicationContext, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Job, Queue } from 'bullmq';
import { setTimeout as sleep } from 'node:timers/promises';
import { Idempotent, LockModule } from 'nestjs-redis-lock';
import { dropKeys, randomPrefix, redisUrl, waitFor } from './fixtures/lock-e2e-utils.js';

const IDEMPOTENT_QUEUE = 'idem-e2e-events';
const PLAIN_QUEUE = 'idem-e2e-events-plain';

interface WebhookEvent {
  readonly eventId: string;
  readonly amount: number;
}

/** Balance changes applied, across every app of this process. */
const applied: string[] = [];

async function apply(job: Job<WebhookEvent>): Promise<{ applied: string; seq: number }> {
  await sleep(50);
  applied.push(job.data.eventId);
  return { applied: job.data.eventId, seq: applied.length };
}

@Processor(IDEMPOTENT_QUEUE, { concurrency: 3 })
class IdempotentEvents extends WorkerHost {
  @Idempotent((job: Job<WebhookEvent>) => `webhook:${job.data.eventId}`, { fingerprint: (job: Job<WebhookEvent>) => job.data })
  override async process(job: Job<WebhookEvent>): Promise<{ applied: string; seq: number }> {
    return apply(job);
  }
}

@Processor(PLAIN_QUEUE, { concurrency: 3 })
class PlainEvents extends WorkerHost {
  override async process(job: Job<WebhookEvent>): Promise<{ applied: string; seq: number }> {
    return apply(job);
  }
}

@Module({})
class EventsModule {
  static forRoot(keyPrefix: string, queuePrefix: string, idempotent: boolean): DynamicModule {
    return {
      module: EventsModule,
      imports: [
        LockModule.forRoot({ redis: redisUrl(), keyPrefix }),
        BullModule.forRoot({ connection: { url: redisUrl() }, prefix: queuePrefix }),
        BullModule.registerQueue({ name: idempotent ? IDEMPOTENT_QUEUE : PLAIN_QUEUE }),
      ],
      providers: [idempotent ? IdempotentEvents : PlainEvents],
    };
  }
}

describe('@Idempotent on a BullMQ processor (e2e)', () => {
  const apps: INestApplicationContext[] = [];
  const prefixes: string[] = [];

  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });
  afterAll(async () => {
    await dropKeys(redisUrl(), ...prefixes);
  });

  async function run(idempotent: boolean): Promise<{ results: unknown[]; applied: string[] }> {
    applied.length = 0;
    const keyPrefix = randomPrefix('idem-bull');
    const queuePrefix = randomPrefix('idem-bull-queue').slice(0, -1);
    prefixes.push(keyPrefix, `${queuePrefix}:`);
    for (let i = 0; i < 2; i++) {
      apps.push(
        await NestFactory.createApplicationContext(EventsModule.forRoot(keyPrefix, queuePrefix, idempotent), { logger: ['error'] }),
      );
    }
    const queue = apps[0]!.get<Queue<WebhookEvent>>(getQueueToken(idempotent ? IDEMPOTENT_QUEUE : PLAIN_QUEUE), { strict: false });
    // The same event delivered three times (a provider retrying its webhook), and another event once.
    const jobs = await queue.addBulk([
      { name: 'event', data: { eventId: 'evt_1', amount: 100 } },
      { name: 'event', data: { eventId: 'evt_1', amount: 100 } },
      { name: 'event', data: { eventId: 'evt_2', amount: 5 } },
      { name: 'event', data: { eventId: 'evt_1', amount: 100 } },
    ]);
    await waitFor(
      'every job finished',
      async () => {
        const { completed = 0, failed = 0 } = await queue.getJobCounts('completed', 'failed');
        return completed + failed >= jobs.length;
      },
      30_000,
      50,
    );
    const results = await Promise.all(jobs.map(async (job) => (await queue.getJob(job.id!))?.returnvalue));
    return { results, applied: [...applied].sort() };
  }

  it('a duplicated event applies once and every duplicate job returns the first result', async () => {
    const { results, applied: done } = await run(true);
    expect(done).toEqual(['evt_1', 'evt_2']);
    const first = results[0] as { applied: string; seq: number };
    expect(first.applied).toBe('evt_1');
    expect(results[1]).toEqual(first);
    expect(results[3]).toEqual(first);
    expect(results[2]).toMatchObject({ applied: 'evt_2' });
  }, 60_000);

  it('without @Idempotent the same deliveries apply the event three times', async () => {
    const { applied: done } = await run(false);
    expect(done).toEqual(['evt_1', 'evt_1', 'evt_1', 'evt_2']);
  }, 60_000);
});
