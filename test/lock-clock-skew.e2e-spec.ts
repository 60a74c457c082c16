/**
 * Hosts whose wall clocks disagree: two lock-fault-worker.ts children with `Date.now()` shifted by
 * +5 s and -5 s (test/helpers/skew-clock.mjs, through spawnFixture's `clockSkewMs`) and this process,
 * unshifted, on one private redis-server. A lock must not depend on clocks agreeing: no overlap, no
 * process starved, no timeout while the lock keeps changing hands, a hand-off is prompt whoever's clock
 * is fast, and a lock is never valid (in its holder's own clock) for longer than its ttl.
 */
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockModule, LockService } from 'nestjs-redis-lock';
import { command, type WorkerAcquired } from './fixtures/fault-utils.js';
import { contend, type ContentionOptions, type ContentionStats } from './fixtures/lock-contention.js';
import { type FixtureChild, killChild, randomPrefix, settle, spawnFixture } from './fixtures/lock-e2e-utils.js';
import { startRedis, type RedisServerHandle } from './helpers/redis-server.js';

const SKEWS = [5_000, -5_000] as const;
const TTL = 2_000;

describe('locks across skewed wall clocks (e2e)', () => {
  const keyPrefix = randomPrefix('skew');
  const workers = new Map<number, FixtureChild>();
  let server: RedisServerHandle;
  let app: INestApplicationContext | undefined;
  let locks: LockService;
  let redis: Redis;

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url, { maxRetriesPerRequest: 2 });
    for (const clockSkewMs of SKEWS) {
      workers.set(clockSkewMs, spawnFixture('lock-fault-worker.ts', { REDIS_URL: server.url, KEY_PREFIX: keyPrefix }, { clockSkewMs }));
    }
    app = await NestFactory.createApplicationContext(LockModule.forRoot({ redis: server.url, keyPrefix }), { logger: false });
    locks = app.get(LockService);
    const ready = await Promise.all([...workers.values()].map((worker) => worker.message('ready', 60_000)));
    expect(ready).toHaveLength(SKEWS.length);
  }, 90_000);

  afterAll(async () => {
    await Promise.all([...workers.values()].map(killChild));
    await app?.close();
    redis.disconnect();
    await server.stop();
  }, 30_000);

  it('the preload really skews the children: each one’s Date.now() is off by its skew', async () => {
    for (const [skew, worker] of workers) {
      command(worker, { op: 'acquire', id: `clock:${skew}`, key: `clock:${skew}`, ttl: 1_000, wait: 0, holdMs: 0 });
      const message = await worker.message<WorkerAcquired>(`acquired:clock:${skew}`, 10_000);
      // `at` is stamped here on arrival, a few ms after the child's `now`.
      expect(Math.abs(message.now - message.at - skew)).toBeLessThan(1_000);
    }
  });

  describe('three processes on one hot key', () => {
    /** Far longer than a turn: three contenders with a few ms of work each never need it, unless one is skipped. */
    const WAIT = 2_000;
    const DURATION = 3_000;
    const MAX_ROUNDS = 5_000;

    it('±5 s skew: no overlap, fair shares, no timeouts, and no lock valid for longer than its ttl', async () => {
      const options: ContentionOptions = {
        key: 'hot',
        counterKey: `${keyPrefix}counter`,
        ttl: TTL,
        wait: WAIT,
        durationMs: DURATION,
        maxRounds: MAX_ROUNDS,
      };
      for (const [skew, worker] of workers) command(worker, { op: 'contend', id: `hot:${skew}`, ...options });
      const [own, ...others] = await Promise.all([
        contend(locks, redis, options),
        ...[...workers].map(([skew, worker]) => worker.message<ContentionStats>(`contended:hot:${skew}`, DURATION + 30_000)),
      ]);
      const all = [own!, ...others];
      const total = all.reduce((sum, s) => sum + s.rounds, 0);
      const counter = Number((await redis.get(options.counterKey)) ?? 0);
      const fairShare = total / all.length;

      // Every violation, labelled by process, so that one failure shows the whole picture.
      const names = ['unskewed', ...SKEWS.map((skew) => `${skew > 0 ? '+' : ''}${skew / 1000}s`)];
      const problems: string[] = [];
      if (counter !== total) problems.push(`counter ${counter} != ${total} increments: two holders overlapped`);
      all.forEach((stats, i) => {
        const name = names[i]!;
        if (stats.timeouts > 0) problems.push(`${name}: ${stats.timeouts} timeouts (longest wait ${stats.maxWaitMs} ms)`);
        if (stats.errors > 0) problems.push(`${name}: ${stats.errors} errors, first: ${stats.firstError}`);
        if (stats.rounds < fairShare / 4)
          problems.push(`${name}: starved, ${stats.rounds} of ${total} rounds (fair share ${Math.round(fairShare)})`);
        if (stats.maxValidAhead > TTL) problems.push(`${name}: a lock valid for ${Math.round(stats.maxValidAhead)} ms > ttl ${TTL}`);
      });
      expect(total).toBeGreaterThan(30); // it really contended
      expect({ problems, rounds: all.map((s) => s.rounds) }).toEqual({ problems: [], rounds: all.map((s) => s.rounds) });
    }, 60_000);
  });

  describe('one hand-off at a time', () => {
    /** Long enough for a polling waiter's retry interval to grow to 0.5–1 s. */
    const HOLD = 700;
    const ROUNDS_EACH = 2;
    /** Longer than the skew, so that no clock can take the waiter for gone: what is left is how the hand-off is timed. */
    const WAITER_WAIT = 15_000;
    /**
     * A hand-off is one notification (a few ms); a waiter that was skipped finds the lock by its retry
     * timer, 0–1 s later, and lands under this in every round by chance only rarely.
     */
    const PROMPT_MS = 250;

    /** Per round: how long after the release the waiter had the lock, and for how long it was valid in the waiter's clock. */
    type Round = { gapMs: number; validFor: number | undefined };
    const verdict = (rounds: Round[]) => ({
      slow: rounds.filter((r) => r.gapMs >= PROMPT_MS).length,
      tooLong: rounds.filter((r) => r.validFor === undefined || r.validFor > TTL).length,
      expired: rounds.filter((r) => r.validFor === undefined || r.validFor <= 0).length,
      rounds,
    });

    it.each(SKEWS)(
      'from a releaser %i ms off: the waiter here is handed the lock at once, valid for at most its ttl',
      async (skew) => {
        const worker = workers.get(skew)!;
        const key = `from:${skew}`;
        const rounds: Round[] = [];
        for (let round = 0; round < ROUNDS_EACH; round++) {
          const id = `${key}:${round}`;
          command(worker, { op: 'acquire', id, key, ttl: 10_000, wait: 0, holdMs: HOLD });
          await worker.message(`acquired:${id}`, 10_000);
          const taken = await settle(locks.acquire(key, { ttl: TTL, wait: WAITER_WAIT }), 25_000);
          const gotAt = Date.now();
          const validFor = taken.value ? taken.value.validUntil - gotAt : undefined;
          const released = await worker.message(`released:${id}`, 5_000);
          await taken.value?.release();
          // The release message is stamped on arrival here, a little after the release itself: the gap is, if anything, short.
          rounds.push({ gapMs: Math.max(0, gotAt - released.at), validFor });
        }
        expect(verdict(rounds)).toEqual({ slow: 0, tooLong: 0, expired: 0, rounds });
      },
      30_000,
    );

    it.each(SKEWS)(
      'to a waiter %i ms off: it is handed the lock at once, valid (in its own clock) for at most its ttl',
      async (skew) => {
        const worker = workers.get(skew)!;
        const key = `to:${skew}`;
        const rounds: Round[] = [];
        for (let round = 0; round < ROUNDS_EACH; round++) {
          const id = `${key}:${round}`;
          const held = await locks.acquire(key, { ttl: 10_000 });
          command(worker, { op: 'acquire', id, key, ttl: TTL, wait: WAITER_WAIT, holdMs: 50 });
          await worker.message(`waiting:${id}`, 10_000);
          await sleep(HOLD);
          const releasedAt = Date.now();
          expect(await held.release()).toBe(true);
          const got = await worker.message<WorkerAcquired>(`acquired:${id}`, 20_000);
          await worker.message(`released:${id}`, 5_000);
          rounds.push({ gapMs: got.at - releasedAt, validFor: got.validUntil - got.now });
        }
        expect(verdict(rounds)).toEqual({ slow: 0, tooLong: 0, expired: 0, rounds });
      },
      30_000,
    );
  });
});
