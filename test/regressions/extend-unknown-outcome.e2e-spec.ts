/**
 * Found in review (now fixed; this test failed before the fix): An extension that shortens the ttl (lock.extend(short), or the heartbeat's last beats before maxHold)
 * and whose outcome is unknown (ioredis commandTimeout, a command flushed by maxRetriesPerRequest after
 * it was sent) leaves `expiresAt` at the old, longer validity while Redis applies the shorter PEXPIRE:
 * another owner takes the key while this one still says isHeld.
 */
import { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import { startRedis, type RedisServerHandle } from '../helpers/redis-server.js';
import { engine, prefix, type Engine } from './regression-utils.js';

describe('regression: an extension with an unknown outcome', () => {
  let server: RedisServerHandle;
  const engines: Engine[] = [];
  let admin: Redis;

  beforeAll(async () => {
    server = await startRedis();
    admin = new Redis(server.url);
  });
  afterAll(async () => {
    for (const e of engines) await e.lc.close();
    admin.disconnect();
    await server.stop();
  });

  it('never leaves the local validity beyond the server expiry', async () => {
    const keyPrefix = prefix('ext');
    const h = engine(server.url, keyPrefix, { redis: { commandTimeout: 100 } });
    const o = engine(server.url, keyPrefix);
    engines.push(h, o);
    const key = 'acct:3';
    const lock = await h.lc.acquire(key, { ttl: 5_000 });
    await lock.extend(5_000); // the EXTEND script is cached (else the paused EVALSHA would just answer NOSCRIPT)
    await o.lc.isLocked(key); // o's connection is ready and the script cached before the pause
    await admin.call('CLIENT', 'PAUSE', '400', 'ALL');
    const error = await lock.extend(300).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeDefined(); // no answer in time: the outcome is unknown
    await sleep(900); // the paused PEXPIRE 300 ran at ~400 ms: the key expired on the server at ~700 ms
    const other = await o.lc.tryAcquire(key, { ttl: 5_000 });
    expect(lock.isHeld && other !== null).toBe(false);
  }, 20_000);
});
