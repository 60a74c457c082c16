/**
 * Redis crashes (SIGKILL) and comes back, empty or from an older snapshot (`SAVE` taken before the
 * last acquisitions): fencing tokens handed out after the restart must be strictly greater than every
 * token handed out before the crash, or a resource that checks them would accept a stale holder's write
 * (or refuse the new holder's). Each test has its own persistent redis-server (test/helpers/redis-server.ts).
 */
import { Redis } from 'ioredis';
import type { LockService } from 'nestjs-redis-lock';
import { LockApps } from './fixtures/fault-utils.js';
import { randomPrefix, settle } from './fixtures/lock-e2e-utils.js';
import { startRedis, type RedisServerHandle } from './helpers/redis-server.js';

const KEY = 'restart:k';
const ROUNDS = 5;

/** Takes and releases KEY `rounds` times; the fencing tokens handed out. */
async function take(locks: LockService, rounds: number, wait: number): Promise<number[]> {
  const fences: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const got = await settle(locks.acquire(KEY, { ttl: 5_000, wait }), wait + 10_000);
    if (!got.value) throw new Error(`acquisition ${i + 1} failed: ${String(got.error)}`);
    fences.push(got.value.fencingToken);
    await got.value.release();
  }
  return fences;
}

describe('Redis SIGKILL and restart (e2e)', () => {
  const apps = new LockApps();
  let server: RedisServerHandle | undefined;

  afterEach(async () => {
    await apps.closeAll();
    await server?.stop();
    server = undefined;
  }, 30_000);

  async function boot(): Promise<{ locks: LockService; admin: Redis }> {
    server = await startRedis({ persist: true });
    const { locks } = await apps.boot({ redis: server.url, keyPrefix: randomPrefix('restart'), connectTimeout: 500 });
    const admin = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    admin.on('error', () => undefined);
    await admin.connect();
    return { locks, admin };
  }

  it('after a SIGKILL and a restart with no data, new fencing tokens are above every earlier one', async () => {
    const { locks, admin } = await boot();
    const before = await take(locks, ROUNDS, 0);
    admin.disconnect();

    await server!.kill();
    await server!.restart();
    // ioredis reconnects with a backoff (up to 2 s): the first wait covers it.
    const after = await take(locks, 3, 8_000);

    const maxBefore = Math.max(...before);
    expect({ tooLow: after.filter((fence) => fence <= maxBefore), maxBefore, after }).toEqual({ tooLow: [], maxBefore, after });
  }, 60_000);

  it('after a restart from an older snapshot, new fencing tokens are above every token handed out before the crash', async () => {
    const { locks, admin } = await boot();
    const early = await take(locks, ROUNDS, 0);
    await admin.save();
    // Handed out after the snapshot: the restarted server has never heard of these.
    const late = await take(locks, ROUNDS, 0);
    admin.disconnect();

    await server!.kill();
    await server!.restart();
    const after = await take(locks, 3, 8_000);

    const maxBefore = Math.max(...early, ...late);
    expect({ tooLow: after.filter((fence) => fence <= maxBefore), maxBefore, after }).toEqual({
      tooLow: [],
      maxBefore,
      after,
    });
    // The tokens also keep increasing among themselves.
    expect([...after].sort((a, b) => a - b)).toEqual(after);
  }, 60_000);
});
