/**
 * @WithLock on a @nestjs/bullmq WorkerHost.process with onTimeout 'requeue', two worker apps in one
 * process, a burst of jobs on one account whose work outlasts the lock's wait: no overlap, every
 * job completes, none fails, contended jobs are requeued without spending an attempt, and the
 * processor's @OnWorkerEvent handler (metadata on the same class) fires for every job.
 */
import { getQueueToken } from '@nestjs/bullmq';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Job, Queue } from 'bullmq';
import { LockService } from 'nestjs-redis-lock';
import {
  type AccountJob,
  BullFixtureModule,
  type BullFixtureConfig,
  CONCURRENCY,
  LOCKED_QUEUE,
  Probe,
  UNLOCKED_QUEUE,
} from './fixtures/lock-bullmq.module.js';
import { dropKeys, randomPrefix, redisUrl, waitFor } from './fixtures/lock-e2e-utils.js';

const WORKERS = 2;
const JOBS = 16;

describe('@WithLock on a BullMQ processor (e2e)', () => {
  const apps: INestApplicationContext[] = [];
  const prefixes: string[] = [];

  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });

  afterAll(async () => {
    await dropKeys(redisUrl(), ...prefixes);
  });

  /** WORKERS worker apps on one fresh queue; returns the queue (from the first app) and the probe. */
  async function cluster(locked: boolean): Promise<{ queue: Queue<AccountJob>; probe: Probe; config: BullFixtureConfig }> {
    const keyPrefix = randomPrefix('bull-lock');
    const queuePrefix = randomPrefix('bull-queue').slice(0, -1);
    prefixes.push(keyPrefix, `${queuePrefix}:`);
    const config: BullFixtureConfig = { redisUrl: redisUrl(), keyPrefix, queuePrefix, locked, probe: new Probe() };
    for (let i = 0; i < WORKERS; i++) {
      apps.push(await NestFactory.createApplicationContext(BullFixtureModule.forRoot(config), { logger: ['error', 'warn'] }));
    }
    const queue = apps[0]!.get<Queue<AccountJob>>(getQueueToken(locked ? LOCKED_QUEUE : UNLOCKED_QUEUE), { strict: false });
    return { queue, probe: config.probe, config };
  }

  async function burst(queue: Queue<AccountJob>): Promise<Job<AccountJob>[]> {
    await queue.addBulk(Array.from({ length: JOBS }, (_, n) => ({ name: 'apply', data: { id: 'hot', n }, opts: { attempts: 3 } })));
    await waitFor(
      `${JOBS} finished jobs`,
      async () => {
        const { completed = 0, failed = 0 } = await queue.getJobCounts('completed', 'failed');
        return completed + failed >= JOBS;
      },
      60_000,
      100,
    );
    return queue.getJobs(['completed', 'failed', 'delayed', 'wait', 'active'], 0, -1);
  }

  it('serialises the jobs of one account; all complete, contended ones are requeued, not failed', async () => {
    const { queue, probe } = await cluster(true);
    let requeued = 0;
    for (const app of apps) app.get(LockService).on('requeued', () => requeued++);

    const jobs = await burst(queue);
    // The 'completed' event is emitted after the job is moved; give the handlers a moment (bounded).
    await waitFor('a completed event per job', async () => probe.completedEvents.length >= JOBS, 10_000);

    expect(await queue.getJobCounts('completed', 'failed', 'delayed', 'wait', 'active')).toEqual({
      completed: JOBS,
      failed: 0,
      delayed: 0,
      wait: 0,
      active: 0,
    });
    expect(probe.maxInFlight).toBe(1);
    expect(probe.runs).toBe(JOBS);
    expect(probe.failedEvents).toEqual([]);
    expect(requeued).toBeGreaterThan(0);
    expect([...probe.completedEvents].sort()).toEqual(jobs.map((j) => j.id!).sort());

    // BullMQ 6 counts the final, successful attempt in attemptsMade; a requeue (moveToDelayed with
    // skipAttempt + DelayedError) only adds to attemptsStarted.
    const starts = jobs.map((j) => ({ made: j.attemptsMade, started: j.attemptsStarted }));
    expect(starts.every((s) => s.made === 1)).toBe(true);
    const extraStarts = starts.reduce((sum, s) => sum + s.started - 1, 0);
    expect(extraStarts).toBe(requeued);
    expect(starts.some((s) => s.started > 1)).toBe(true);
    expect(jobs.every((j) => j.stalledCounter === 0)).toBe(true);
    expect(jobs.map((j) => j.returnvalue.n).sort((a, b) => a - b)).toEqual(Array.from({ length: JOBS }, (_, n) => n));
  }, 90_000);

  it('without the lock the same burst overlaps (the control)', async () => {
    const { queue, probe } = await cluster(false);
    const jobs = await burst(queue);
    await waitFor('a completed event per job', async () => probe.completedEvents.length >= JOBS, 10_000);

    expect(jobs.filter((j) => j.finishedOn && !j.failedReason)).toHaveLength(JOBS);
    expect(probe.maxInFlight).toBeGreaterThan(1);
    expect(probe.maxInFlight).toBeLessThanOrEqual(WORKERS * CONCURRENCY);
    expect(probe.runs).toBe(JOBS);
  }, 90_000);
});
