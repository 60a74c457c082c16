/**
 * LockClient.health(): the store's own check when it has one, an `isLocked` round trip otherwise, and
 * always bounded: a store that never answers is reported down after the timeout, never waited for.
 */
import { LockClient, type LockClientOptions } from '../lock-client.js';
import { MemoryLockStore } from './memory/memory-store.js';
import type { LockStore } from './store.js';

const options = (store: LockStore): LockClientOptions => ({
  store,
  ownsStore: true,
  ttl: 10_000,
  wait: 0,
  autoExtend: false,
  onLockLost: 'continue',
  connectTimeout: 200,
});

/** A store of one's own without `health()`, whose `isLocked` answers as `answer` says. */
function customStore(answer: () => Promise<boolean>): LockStore {
  const memory = new MemoryLockStore();
  return {
    acquire: (request) => memory.acquire(request),
    release: (keys, token) => memory.release(keys, token),
    extend: (keys, token, ttl) => memory.extend(keys, token, ttl),
    inspect: (key, token) => memory.inspect(key, token),
    isLocked: answer,
    forceRelease: (key) => memory.forceRelease(key),
    leave: (request) => memory.leave(request),
    close: () => memory.close(),
  };
}

describe('LockClient.health()', () => {
  it('the memory store is up', async () => {
    const client = new LockClient(options(new MemoryLockStore()));
    await expect(client.health()).resolves.toEqual({ up: true, details: { store: 'memory' } });
    await client.close();
    // Closed: down, with the reason.
    await expect(client.health()).resolves.toEqual({ up: false, details: { error: expect.stringContaining('shut down') } });
  });

  it('a store without health() is asked isLocked: up when it answers, down with the error when it fails', async () => {
    const answering = new LockClient(options(customStore(async () => false)));
    await expect(answering.health()).resolves.toEqual({ up: true, details: { store: 'custom' } });
    const failing = new LockClient(options(customStore(async () => Promise.reject(new Error('ECONNREFUSED')))));
    const down = await failing.health();
    expect(down.up).toBe(false);
    expect(String(down.details.error)).toContain('ECONNREFUSED');
    await Promise.all([answering.close(), failing.close()]);
  });

  it('a store that never answers is down after about the timeout (default connectTimeout), not later', async () => {
    const client = new LockClient(options(customStore(() => new Promise<boolean>(() => undefined))));
    for (const timeout of [undefined, 100]) {
      const start = performance.now();
      const result = await client.health(timeout);
      const ms = performance.now() - start;
      expect(result.up).toBe(false);
      expect(String(result.details.error)).toMatch(/did not answer|no answer/);
      expect(ms).toBeGreaterThanOrEqual((timeout ?? 200) - 20);
      expect(ms).toBeLessThan(2_000);
    }
    await client.close();
  });
});
