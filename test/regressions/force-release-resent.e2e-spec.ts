/**
 * Found in review (now fixed; this test failed before the fix): FORCE_RELEASE is not idempotent: run twice (ioredis re-sends it after a lost reply), the second run
 * frees the lock the first run handed to the next waiter and hands it on again: two owners at once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lock } from 'nestjs-redis-lock';
import { engine, prefix, track, proxiedServer } from './regression-utils.js';
import { waitFor } from '../fixtures/lock-e2e-utils.js';

describe('regression: forceRelease re-sent after a lost reply', () => {
  const env = proxiedServer();

  it('does not leave two waiters both holding the key', async () => {
    const keyPrefix = prefix('force');
    const holder = engine(env.server.url, keyPrefix);
    const a = engine(env.server.url, keyPrefix);
    const b = engine(env.server.url, keyPrefix);
    // the operator's connection goes through the proxy; it reconnects after 200 ms
    const op = engine(env.proxy.url, keyPrefix, { redis: { retryStrategy: () => 200 } });
    env.engines.push(holder, a, b, op);
    const key = 'acct:1';

    await holder.lc.acquire(key, { ttl: 10_000 }); // a stuck holder the operator will force-release
    const pa = track(a.lc.acquire(key, { ttl: 10_000, wait: 8_000 }) as Promise<Lock>);
    await sleep(300);
    const pb = track(b.lc.acquire(key, { ttl: 10_000, wait: 8_000 }) as Promise<Lock>);
    await sleep(300);
    expect(await op.lc.isLocked(key)).toBe(true); // connects, loads nothing else on this connection

    const dropped = env.proxy.dropNextReply({ match: (c) => c.toString('latin1').startsWith(':'), timeoutMs: 5_000 });
    // Its answer may be false: the re-sent run finds the next holder, which it must leave alone.
    await op.lc.forceRelease(key);
    expect(await dropped).toBeDefined(); // the reply of the first run was lost; ioredis re-sent it

    await waitFor('both waits to settle', async () => pa.settled() && pb.settled(), 3_000, 20).catch(() => undefined);
    const la = pa.value;
    const lb = pb.value;
    const aHeld = la?.isHeld ?? false;
    const bHeld = lb?.isHeld ?? false;
    expect(aHeld && bHeld).toBe(false);
  }, 20_000);
});
