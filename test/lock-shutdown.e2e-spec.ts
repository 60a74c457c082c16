/**
 * Graceful shutdown in a real process: app.close() with a held, heartbeating lock and three
 * pending waiters must reject the waiters with LockShutdownError, release the lock (its key is
 * gone from Redis), close the module's own connections, and let the process end by itself.
 */
import { Redis } from 'ioredis';
import { withoutCounters } from './helpers/lock-keys.js';
import {
  dropKeys,
  exitWithin,
  type FixtureChild,
  keysMatching,
  killChild,
  randomPrefix,
  redisUrl,
  spawnFixture,
} from './fixtures/lock-e2e-utils.js';

const KEY = 'shutdown:resource';

describe('app.close() in a process (e2e)', () => {
  const keyPrefix = randomPrefix('shutdown');
  let child: FixtureChild | undefined;
  let redis: Redis;

  beforeAll(() => {
    redis = new Redis(redisUrl());
  });

  afterAll(async () => {
    if (child) await killChild(child);
    await dropKeys(redisUrl(), keyPrefix);
    await redis.quit();
  });

  it('rejects the waiters with LockShutdownError, deletes the lock key and exits on its own', async () => {
    child = spawnFixture('lock-shutdown-child.ts', { REDIS_URL: redisUrl(), KEY_PREFIX: keyPrefix, LOCK_KEY: KEY });
    const holding = await child.message<{ isHeld: boolean }>('holding', 60_000);
    expect(holding.isHeld).toBe(true);
    // The lock and its waiters' queue exist in Redis while the child holds it.
    const before = withoutCounters(await keysMatching(redis, `${keyPrefix}*`));
    expect(before.length).toBeGreaterThanOrEqual(2);

    child.send('close');
    const closing = await child.message('closing', 10_000);
    const exit = await exitWithin(child, 10_000);
    if (!exit) {
      await killChild(child);
      throw new Error(`the child did not exit within 10 s of app.close(); stderr:\n${child.stderr()}`);
    }
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(exit.at - closing.at).toBeLessThan(10_000);

    const closed = await child.message<{ lockIsHeld: boolean; closeMs: number }>('closed', 1_000);
    expect(closed.lockIsHeld).toBe(false);
    const { waiters } = await child.message<{ waiters: Array<{ outcome: string; name?: string; isShutdownError?: boolean }> }>(
      'waiters',
      1_000,
    );
    expect(waiters).toEqual(
      Array.from({ length: 3 }, () => expect.objectContaining({ outcome: 'rejected', name: 'LockShutdownError', isShutdownError: true })),
    );

    // Nothing of the lock is left: no lock key, no queue of waiters (the fencing counter may stay).
    const left = withoutCounters(await keysMatching(redis, `${keyPrefix}*`));
    expect(left).toEqual([]);
  }, 90_000);
});
