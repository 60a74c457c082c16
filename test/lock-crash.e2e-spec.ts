/**
 * A holder that dies without releasing: its lock must stay held while it lives (the heartbeat
 * extends it past its ttl), then expire after roughly one ttl once it is SIGKILLed, and the next
 * holder must get a higher fencing token. Real Redis (REDIS_URL), real processes, real time.
 */
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockModule, LockService } from 'nestjs-redis-lock';
import { dropKeys, type FixtureChild, killChild, randomPrefix, redisUrl, spawnFixture } from './fixtures/lock-e2e-utils.js';

const TTL = 1_500;
const KEY = 'crash:resource';

describe('lock held by a crashed process (e2e)', () => {
  const keyPrefix = randomPrefix('crash');
  let app: INestApplicationContext | undefined;
  let holder: FixtureChild | undefined;

  afterAll(async () => {
    if (holder) await killChild(holder);
    await app?.close();
    await dropKeys(redisUrl(), keyPrefix);
  });

  it('expires about one ttl after SIGKILL, not before, and the next holder gets a higher fencing token', async () => {
    app = await NestFactory.createApplicationContext(LockModule.forRoot({ redis: redisUrl(), keyPrefix }), { logger: false });
    const locks = app.get(LockService);

    holder = spawnFixture('lock-crash-holder.ts', { REDIS_URL: redisUrl(), KEY_PREFIX: keyPrefix, LOCK_KEY: KEY, TTL_MS: String(TTL) });
    const locked = await holder.message<{ fencingToken: number }>('locked', 60_000);

    // Alive for more than two ttls: only the heartbeat can have kept it held this long.
    await sleep(2 * TTL + 500);
    expect(await locks.isLocked(KEY)).toBe(true);
    expect(await locks.tryAcquire(KEY, { ttl: 5_000 })).toBeNull();

    holder.process.kill('SIGKILL');
    const exit = await holder.exited;
    expect(exit.signal).toBe('SIGKILL');
    const killedAt = exit.at;

    // Nobody releases it: the waiter gets it only when the dead holder's last extension runs out.
    expect(await locks.isLocked(KEY)).toBe(true);
    const lock = await locks.acquire(KEY, { ttl: 5_000, wait: 5_000 });
    const afterKill = Date.now() - killedAt;
    try {
      // The last heartbeat (every ttl/3) left at least ~ttl*2/3 to run; 300 ms is well below that.
      expect(afterKill).toBeGreaterThanOrEqual(300);
      expect(afterKill).toBeLessThanOrEqual(TTL + 1_000);
      expect(lock.fencingToken).toBeGreaterThan(locked.fencingToken);
    } finally {
      await lock.release();
    }
  }, 90_000);
});
