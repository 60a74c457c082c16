/**
 * The lock on Redis Clusters that differ from the default one (3 masters, no replicas, one per test):
 *
 * - servers without sharded pub/sub, as a Redis 6.2 Cluster (here a Redis 7 with SPUBLISH removed by
 *   `rename-command`, since only Redis 7 is installed): the store must find out before its first
 *   script, publish and subscribe plainly, and still wake waiters by notification. A script that
 *   called SPUBLISH there would fail after its writes (Redis does not roll a script back).
 * - a Cluster client whose own keyPrefix is a hash tag (`{app}:`): every name of the module lands in
 *   that tag's slot, multi-key locks and wake-ups still work.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import type { LockClient } from '../libs/lock/src/core/lock-client.js';
import { createLockClient } from '../libs/lock/src/lock.module-definition.js';
import { randomPrefix, settle } from './fixtures/lock-e2e-utils.js';
import { type ClusterHandle, clusterKeySlot, startCluster, stopAllTopologies } from './helpers/redis-topologies.js';
import { stopAll } from './helpers/redis-server.js';

const clients: LockClient[] = [];
const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => settle(client.close(), 5_000)));
  await stopAllTopologies();
}, 30_000);

afterAll(async () => {
  await stopAllTopologies();
  await stopAll();
}, 30_000);

/** Keys in distinct slots (n = 0, 1, …), as many as asked. */
function keysInDistinctSlots(stem: string, count: number): string[] {
  const slots = new Set<number>();
  const keys: string[] = [];
  for (let n = 0; n < 10_000 && keys.length < count; n++) {
    const key = `${stem}-${n}`;
    if (slots.has(clusterKeySlot(key))) continue;
    slots.add(clusterKeySlot(key));
    keys.push(key);
  }
  return keys;
}

/**
 * Hands `rounds` locks over from a holder to a waiter that queued first (single keys and a multi-key
 * lock across slots); answers each release → grant time.
 */
async function handoffs(holder: LockClient, waiter: LockClient, keys: readonly string[], rounds: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const key = i % 3 === 2 ? [keys[i % keys.length]!, keys[(i + 1) % keys.length]!] : keys[i % keys.length]!;
    // A long ttl: without a notification the waiter would sleep on its 100 ms (then longer) retry timer.
    const held = await holder.acquire(key, { ttl: 10_000 });
    const waiting = waiter.acquire(key, { ttl: 10_000, wait: 5_000 });
    await sleep(120);
    const released = performance.now();
    await held.release();
    const granted = await waiting;
    times.push(performance.now() - released);
    expect(granted.fencingToken).toBeGreaterThan(held.fencingToken);
    await granted.release();
  }
  return times;
}

describe('lock on Redis Cluster variants (e2e)', () => {
  it('servers without SPUBLISH (as Redis 6.2): plain pub/sub, locks work and waiters are woken by notification', async () => {
    const cluster: ClusterHandle = await startCluster({ replicasPerMaster: 0, args: ['--rename-command', 'SPUBLISH', ''] });
    // The premise: the servers really refuse SPUBLISH.
    const probe = new Redis(cluster.urls[0]!, { maxRetriesPerRequest: 1 });
    try {
      await expect(probe.call('SPUBLISH', 'c', 'm')).rejects.toThrow(/unknown command/i);
    } finally {
      probe.disconnect();
    }
    const keyPrefix = randomPrefix('no-spublish');
    const holder = createLockClient({ redis: { cluster: [...cluster.urls] }, keyPrefix });
    const waiter = createLockClient({ redis: { cluster: [...cluster.urls] }, keyPrefix });
    clients.push(holder, waiter);
    await holder.checkStore();
    const times = await handoffs(holder, waiter, keysInDistinctSlots('nospub', 6), 12);
    console.log(`no-SPUBLISH cluster hand-off: median ${median(times).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms`);
    expect(median(times)).toBeLessThan(20);
    expect(Math.max(...times)).toBeLessThan(50);
  }, 60_000);

  // Before the fix, both failed on the wake-ups (polled, ~90 ms): ioredis adds the client's keyPrefix to
  // SSUBSCRIBE's channels itself, and the subscriber added it too.
  it.each([
    ['a hash tag: every name in that slot', true],
    ['no braces: names spread over the masters', false],
  ])(
    'a Cluster client keyPrefix with %s; multi-key locks and wake-ups work',
    async (_name, tag) => {
      const cluster: ClusterHandle = await startCluster({ replicasPerMaster: 0 });
      const id = Math.random().toString(36).slice(2, 8);
      const clientPrefix = tag ? `{app-${id}}:` : `app-${id}:`;
      const keyPrefix = randomPrefix('prefixed');
      const options = { redis: { cluster: [...cluster.urls], options: { keyPrefix: clientPrefix } }, keyPrefix };
      const holder = createLockClient(options);
      const waiter = createLockClient(options);
      clients.push(holder, waiter);
      const keys = keysInDistinctSlots('prefixed', 6);
      const times = await handoffs(holder, waiter, keys, 9);
      console.log(`keyPrefix ${clientPrefix} hand-off: median ${median(times).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms`);
      expect(median(times)).toBeLessThan(20);
      expect(Math.max(...times)).toBeLessThan(50);
      // Hold every key at once, then look where the lock names are.
      const all = await holder.acquire(keys, { ttl: 10_000 });
      const slots = new Set<number>();
      const masters = new Set<number>();
      for (const master of await cluster.masters()) {
        const redis = new Redis(master.url, { maxRetriesPerRequest: 1 });
        try {
          // KEYS is fine on a test server holding a handful of names.
          for (const name of await redis.keys(`${clientPrefix}${keyPrefix}*`)) {
            if (name.endsWith(':f')) continue;
            slots.add(clusterKeySlot(name));
            masters.add(master.port);
          }
        } finally {
          redis.disconnect();
        }
      }
      if (tag) expect([...slots]).toEqual([clusterKeySlot(clientPrefix)]);
      else expect(masters.size).toBeGreaterThan(1);
      expect(await holder.isLocked(keys[3]!)).toBe(true);
      await all.release();
      expect(await holder.isLocked(keys[3]!)).toBe(false);
    },
    60_000,
  );
});
