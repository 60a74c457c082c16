/**
 * What waiting costs, and what a pending wait keeps alive:
 * - many waiters on a held key do not poll: only the two first in line watch the holder's expiry on a
 *   timer; the others check at the holder's expiry, doubling the interval while the same holder keeps
 *   extending, so their cost grows with the log of the wait, not with its length;
 * - a process whose only pending work is a wait on the memory store stays alive until the wait ends,
 *   as a wait on Redis does (it used to exit with code 13, "unsettled top-level await").
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { LockClient, LockTimeoutError, RedisLockStore, type LockStore } from 'nestjs-redis-lock';
import { startRedis, type RedisServerHandle } from './helpers/redis-server.js';
import { exitWithin, killChild, spawnFixture } from './fixtures/lock-e2e-utils.js';

const engine = (store: LockStore) =>
  new LockClient({ store, ownsStore: true, ttl: 2_000, wait: 5_000, autoExtend: true, onLockLost: 'continue', connectTimeout: 2_000 });

/** Script calls the server has run so far (every store operation is one script). */
async function scriptCalls(admin: Redis): Promise<number> {
  const stats = String(await admin.info('commandstats'));
  let calls = 0;
  for (const match of stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) calls += Number(match[1]);
  return calls;
}

describe('the cost of waiting (e2e)', () => {
  let server: RedisServerHandle;
  let admin: Redis;

  beforeAll(async () => {
    server = await startRedis();
    admin = new Redis(server.url);
  });
  afterAll(async () => {
    await admin.quit();
    await server.stop();
  });

  it('60 waiters behind a holder that keeps extending: their checks thin out over time instead of polling', async () => {
    const holder = engine(new RedisLockStore({ client: new Redis(server.url), ownsClient: true, keyPrefix: 'cost:' }));
    const waiters = engine(new RedisLockStore({ client: new Redis(server.url), ownsClient: true, keyPrefix: 'cost:' }));
    try {
      // A long job: the heartbeat keeps extending the holder's 500 ms ttl, so its pttl never runs out.
      const held = await holder.acquire('hot', { ttl: 500, autoExtend: true });
      const pending = Array.from({ length: 60 }, () => waiters.acquire('hot', { wait: 8_000 }).catch((e: unknown) => e));
      await sleep(300); // every waiter has queued
      const t0 = await scriptCalls(admin);
      await sleep(3_000);
      const t1 = await scriptCalls(admin);
      await sleep(3_000);
      const t2 = await scriptCalls(admin);
      const first = t1 - t0 - 1;
      const second = t2 - t1 - 1;
      // Polling waiters (a retry at least every holder's pttl, ~0.4 s) made ~900 calls in these 6 s,
      // evenly. Now only the first two poll; the others check at the holder's expiry and double the
      // interval while the same holder extends: fewer calls, and fewer still in the second half.
      expect({ total: first + second < 400, thinning: second < 0.7 * first }).toEqual({ total: true, thinning: true });
      await held.release();
      const outcomes = await Promise.all(pending);
      // The release handed the lock down the line; every waiter got it in turn or timed out waiting.
      const got = outcomes.filter((o) => !(o instanceof Error));
      expect(got.length).toBeGreaterThanOrEqual(1);
      expect(outcomes.filter((o) => o instanceof Error && !(o instanceof LockTimeoutError))).toEqual([]);
      await Promise.all(got.map((lock) => (lock as { release(): Promise<boolean> }).release()));
    } finally {
      await Promise.all([holder.close(), waiters.close()]);
    }
  }, 30_000);
});

describe('a pending wait on the memory store (e2e)', () => {
  it('keeps the process alive until the wait ends, then the process exits 0', async () => {
    const child = spawnFixture('memory-wait-child.ts', {});
    const said = await child.message<{ outcome: string }>('outcome', 20_000).then(
      (m) => m.outcome,
      () => 'nothing',
    );
    const exit = await exitWithin(child, 20_000);
    if (!exit) await killChild(child);
    expect({ code: exit?.code, said, stderr: exit?.code === 0 ? '' : child.stderr() }).toEqual({ code: 0, said: 'timeout', stderr: '' });
  }, 30_000);
});
