/**
 * The lock on a real Redis Cluster (3 masters + 3 replicas, private servers, one cluster for the file):
 * mutual exclusion across processes on keys of every master (and the race without the lock), multi-key
 * locks across slots (all-or-nothing, no deadlock, tokens in the order asked), fencing tokens, waiters
 * woken by notification, bounded leftovers after 100,000 keys, and a master killed mid-run (last: it
 * changes the topology).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import type { LockClient } from '../libs/lock/src/core/lock-client.js';
import { LockError, LockTimeoutError } from '../libs/lock/src/core/errors.js';
import { KeyLayout } from '../libs/lock/src/core/store/redis/key-layout.js';
import { createLockClient } from '../libs/lock/src/lock.module-definition.js';
import { exitWithin, type FixtureChild, killChild, randomPrefix, settle, spawnFixture, waitFor } from './fixtures/lock-e2e-utils.js';
import { isFenceCounter } from './helpers/lock-keys.js';
import { type ClusterHandle, clusterKeySlot, startCluster, stopAllTopologies } from './helpers/redis-topologies.js';
import { stopAll } from './helpers/redis-server.js';

let cluster: ClusterHandle;
/** A plain Cluster client for the data the tests guard (counters, balances). */
let data: Cluster;
const clients: LockClient[] = [];

/** A lock client on the cluster; closed (bounded) after each test, if the test did not close it. */
function lockClient(keyPrefix: string): LockClient {
  const client = createLockClient({ redis: { cluster: [...cluster.urls] }, keyPrefix });
  clients.push(client);
  return client;
}

/** Closes a client, and fails if that does not settle within 5 s. */
async function closeClient(client: LockClient): Promise<void> {
  const closed = await settle(client.close(), 5_000);
  expect(closed.error).toBeUndefined();
}

/**
 * `perMaster` keys `<stem>-<n>` on each master that serves slots now, the first ones found (n = 0, 1, …),
 * in master order, each in a slot of its own.
 */
async function keysOnEveryMaster(stem: string, perMaster: number): Promise<{ keys: string[]; masterPort: Map<string, number> }> {
  const masters = await cluster.masters();
  const wanted = new Map(masters.map((m) => [m.port, [] as string[]]));
  const slots = new Set<number>();
  const masterPort = new Map<string, number>();
  for (let n = 0; n < 1_000 && [...wanted.values()].some((keys) => keys.length < perMaster); n++) {
    const key = `${stem}-${n}`;
    const slot = clusterKeySlot(key);
    if (slots.has(slot)) continue;
    const port = (await cluster.masterOf(slot)).port;
    const keys = wanted.get(port);
    if (!keys || keys.length >= perMaster) continue;
    slots.add(slot);
    keys.push(key);
    masterPort.set(key, port);
  }
  const keys = [...wanted.values()].flat();
  expect(keys).toHaveLength(masters.length * perMaster);
  return { keys, masterPort };
}

/** Every key under `prefix` on every master (SCAN each one, bounded). */
async function keysUnder(prefix: string): Promise<string[]> {
  const found: string[] = [];
  for (const master of await cluster.masters()) {
    const redis = new Redis(master.url, { maxRetriesPerRequest: 1 });
    try {
      let cursor = '0';
      for (let i = 0; i < 10_000; i++) {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 5_000);
        found.push(...keys);
        cursor = next;
        if (cursor === '0') break;
      }
      expect(cursor).toBe('0');
    } finally {
      redis.disconnect();
    }
  }
  return found;
}

const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

beforeAll(async () => {
  cluster = await startCluster();
  data = new Cluster([...cluster.seeds]);
  data.on('error', () => undefined);
}, 60_000);

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => settle(client.close(), 5_000)));
});

afterAll(async () => {
  data?.disconnect();
  await stopAllTopologies();
  await stopAll();
}, 30_000);

describe('lock on Redis Cluster (e2e)', () => {
  describe('a read-modify-write counter race across processes, on keys of every master', () => {
    const PROCESSES = 3;
    const CONCURRENCY = 4;
    const ROUNDS = 4;
    const workers: FixtureChild[] = [];
    let keys: string[];
    let keyPrefix: string;

    beforeAll(async () => {
      keyPrefix = randomPrefix('cluster-race');
      ({ keys } = await keysOnEveryMaster('ctr', 2));
      const env = { CLUSTER_URLS: cluster.urls.join(','), KEY_PREFIX: keyPrefix };
      workers.push(...Array.from({ length: PROCESSES }, () => spawnFixture('lock-cluster-worker.ts', env)));
      await Promise.all(workers.map((w) => w.message('ready', 60_000)));
    }, 70_000);

    afterAll(async () => {
      await Promise.all(workers.map(killChild));
    }, 20_000);

    /** Every worker runs CONCURRENCY loops of ROUNDS increments of every key (fresh ones per call). */
    async function race(locked: boolean) {
      const runKeys = keys.map((key) => `${key}-${locked ? 'locked' : 'free'}`);
      const command = { keys: runKeys, rounds: ROUNDS, concurrency: CONCURRENCY, locked, sleepMs: 3 };
      for (const w of workers) w.send(`run ${JSON.stringify(command)}`);
      const done = await Promise.all(
        workers.map((w) => w.message<{ ok: number; failed: number; firstError?: string; ms: number }>('done', 40_000)),
      );
      const counts = await Promise.all(runKeys.map(async (key) => Number((await data.get(`${keyPrefix}data:{${key}}`)) ?? 0)));
      return { done, counts, expected: PROCESSES * CONCURRENCY * ROUNDS };
    }

    it('with the lock: every counter is exact', async () => {
      const { done, counts, expected } = await race(true);
      expect(done.map(({ ok, failed, firstError }) => ({ ok, failed, firstError }))).toEqual(
        workers.map(() => ({ ok: CONCURRENCY * ROUNDS * keys.length, failed: 0, firstError: undefined })),
      );
      expect(counts).toEqual(keys.map(() => expected));
    }, 45_000);

    it('without the lock: updates are lost (the race is real)', async () => {
      const { done, counts, expected } = await race(false);
      expect(done.map((d) => d.failed)).toEqual(workers.map(() => 0));
      expect(counts.reduce((a, b) => a + b, 0)).toBeLessThan(expected * keys.length);
      expect(counts.every((count) => count <= expected)).toBe(true);
    }, 45_000);

    it('after client.close() every worker leaves on its own (no handle of the library left)', async () => {
      for (const w of workers) w.send('exit');
      await Promise.all(workers.map((w) => w.message('closed', 10_000)));
      const exits = await Promise.all(workers.map((w) => exitWithin(w, 10_000)));
      expect(exits.map((exit) => exit?.code)).toEqual(workers.map(() => 0));
    }, 30_000);
  });

  it('multi-key locks across slots: all-or-nothing, deadlock-free, tokens in the order asked', async () => {
    const keyPrefix = randomPrefix('cluster-multi');
    const {
      keys: [a, b],
    } = await keysOnEveryMaster('acct', 1);
    expect(clusterKeySlot(a!)).not.toBe(clusterKeySlot(b!));
    const A = a!;
    const B = b!;
    const balance = (key: string) => `${keyPrefix}data:{${key}}`;
    const c1 = lockClient(keyPrefix);
    const c2 = lockClient(keyPrefix);
    const c3 = lockClient(keyPrefix);

    // A's slot counter ahead of B's, so that tokens in the wrong order would show.
    for (let i = 0; i < 7; i++) await (await c1.acquire(A, { ttl: 5_000 })).release();

    // All-or-nothing: B held elsewhere, so [A, B] fails and leaves A free.
    const holdB = await c2.acquire(B, { ttl: 5_000 });
    await expect(c1.acquire([A, B], { ttl: 5_000, wait: 0 })).rejects.toBeInstanceOf(LockTimeoutError);
    await expect(c1.acquire([B, A], { ttl: 5_000, wait: 0 })).rejects.toBeInstanceOf(LockTimeoutError);
    expect(await c3.isLocked(A)).toBe(false);
    await holdB.release();

    const START = 1_000;
    await data.set(balance(A), String(START));
    await data.set(balance(B), String(START));
    const WORKERS = 6;
    const TRANSFERS = 6;
    /** fencing tokens [of A, of B] in the order the critical sections ran. */
    const sections: Array<[number, number]> = [];
    const wrongKeys: string[] = [];
    const wrongTokens: string[] = [];
    const notHeld: string[] = [];
    const layout = new KeyLayout(keyPrefix);
    let moved = 0;
    const runs = [c1, c2, c3].flatMap((client, c) =>
      Array.from({ length: WORKERS }, async (_, w) => {
        for (let t = 0; t < TRANSFERS; t++) {
          const forward = (c + w + t) % 2 === 0;
          const order = forward ? [A, B] : [B, A];
          const amount = 1 + ((c * 7 + w * 3 + t) % 5);
          const lock = await client.acquire(order, { ttl: 5_000, wait: 30_000 });
          try {
            if (lock.keys.join() !== order.join()) wrongKeys.push(lock.keys.join());
            const [fenceFirst, fenceSecond] = lock.fencingTokens;
            const section: [number, number] = forward ? [fenceFirst!, fenceSecond!] : [fenceSecond!, fenceFirst!];
            sections.push(section);
            // Nobody else can be granted A or B now, so the slot counters hold exactly our tokens.
            const counters = [Number(await data.get(layout.fence(A))), Number(await data.get(layout.fence(B)))];
            if (counters.join() !== section.join()) wrongTokens.push(`${order.join()}: ${lock.fencingTokens.join()} vs ${counters.join()}`);
            // And both keys really are ours in Redis (not just one slot's share of the lock).
            const values = [await data.get(layout.lock(A)), await data.get(layout.lock(B))];
            if (!values.every((value) => value?.startsWith(`${lock.token}:`))) notHeld.push(`${order.join()}: ${values.join()}`);
            const [from, to] = forward ? [A, B] : [B, A];
            const fromBalance = Number(await data.get(balance(from)));
            const toBalance = Number(await data.get(balance(to)));
            await sleep(1);
            await data.set(balance(from), String(fromBalance - amount));
            await data.set(balance(to), String(toBalance + amount));
            moved += forward ? amount : -amount;
          } finally {
            await lock.release();
          }
        }
      }),
    );
    const all = await settle(Promise.all(runs), 40_000);
    expect(all.error).toBeUndefined();
    expect(wrongKeys).toEqual([]);
    expect(wrongTokens).toEqual([]);
    expect(notHeld).toEqual([]);
    expect(sections).toHaveLength(3 * WORKERS * TRANSFERS);
    const [finalA, finalB] = [Number(await data.get(balance(A))), Number(await data.get(balance(B)))];
    expect(finalA + finalB).toBe(2 * START);
    expect(finalA).toBe(START - moved);
    // Strictly increasing per key.
    for (let i = 1; i < sections.length; i++) {
      expect(sections[i]![0]).toBeGreaterThan(sections[i - 1]![0]);
      expect(sections[i]![1]).toBeGreaterThan(sections[i - 1]![1]);
    }
    expect(await c3.isLocked(A)).toBe(false);
    expect(await c3.isLocked(B)).toBe(false);
    await Promise.all([c1, c2, c3].map(closeClient));
  }, 60_000);

  it('fencing tokens increase strictly across successive holders, and across an expiry', async () => {
    const keyPrefix = randomPrefix('cluster-fence');
    const c1 = lockClient(keyPrefix);
    const c2 = lockClient(keyPrefix);
    const key = 'fenced';
    const tokens: number[] = [];
    for (let i = 0; i < 50; i++) {
      const lock = await (i % 2 === 0 ? c1 : c2).acquire(key, { ttl: 5_000, wait: 2_000 });
      tokens.push(lock.fencingToken);
      await lock.release();
    }
    // Across an expiry: c1 never releases, c2 waits for the ttl to run out.
    const stale = await c1.acquire(key, { ttl: 300 });
    tokens.push(stale.fencingToken);
    const started = Date.now();
    const next = await c2.acquire(key, { ttl: 5_000, wait: 3_000 });
    const waited = Date.now() - started;
    tokens.push(next.fencingToken);
    await next.release();
    // And a third holder after a plain expiry nobody waited for.
    const dropped = await c2.acquire(key, { ttl: 200 });
    tokens.push(dropped.fencingToken);
    await waitFor('the lock to expire', async () => !(await c1.isLocked(key)), 3_000, 20);
    const last = await c1.acquire(key, { ttl: 5_000 });
    tokens.push(last.fencingToken);
    await last.release();

    expect(tokens).toHaveLength(54);
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]!);
    expect(waited).toBeGreaterThanOrEqual(150);
    await Promise.all([c1, c2].map(closeClient));
  }, 30_000);

  it('waiters are woken by a notification within a few ms of the release (not by polling)', async () => {
    const keyPrefix = randomPrefix('cluster-wake');
    const holder = lockClient(keyPrefix);
    const waiter = lockClient(keyPrefix);
    const { keys } = await keysOnEveryMaster('wake', 2);
    const ROUNDS = 18;
    const handoffs: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const key = keys[i % keys.length]!;
      // A long ttl: without a notification the waiter would sleep on its 100 ms (then longer) retry timer.
      const held = await holder.acquire(key, { ttl: 10_000 });
      const waiting = waiter.acquire(key, { ttl: 10_000, wait: 5_000 });
      // Let the waiter try once, queue and subscribe.
      await sleep(120);
      const released = performance.now();
      await held.release();
      const granted = await waiting;
      handoffs.push(performance.now() - released);
      expect(granted.fencingToken).toBeGreaterThan(held.fencingToken);
      await granted.release();
    }
    const max = Math.max(...handoffs);
    console.log(`cluster hand-off release -> grant: median ${median(handoffs).toFixed(1)} ms, max ${max.toFixed(1)} ms`);
    expect(median(handoffs)).toBeLessThan(20);
    expect(max).toBeLessThan(50);
    await Promise.all([holder, waiter].map(closeClient));
  }, 30_000);

  it('100,000 distinct keys leave no lock or queue key, and at most 16,384 fencing counters', async () => {
    const keyPrefix = randomPrefix('cluster-many');
    const client = lockClient(keyPrefix);
    const KEYS = 100_000;
    const IN_FLIGHT = 64;
    let next = 0;
    let failed = 0;
    let firstError: unknown;
    const started = Date.now();
    const deadline = started + 50_000;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < KEYS && Date.now() < deadline) {
          const key = `many-${next++}`;
          try {
            const lock = await client.acquire(key, { ttl: 10_000, wait: 0 });
            if (!(await lock.release())) failed++;
          } catch (error) {
            failed++;
            firstError ??= error;
          }
        }
      }),
    );
    const ms = Date.now() - started;
    expect({ done: next, failed, firstError }).toEqual({ done: KEYS, failed: 0, firstError: undefined });
    const left = await keysUnder(keyPrefix);
    const counters = left.filter(isFenceCounter);
    console.log(`cluster: ${KEYS} keys acquired+released in ${ms} ms; ${left.length} keys left, ${counters.length} fencing counters`);
    expect(left.filter((key) => !isFenceCounter(key))).toEqual([]);
    expect(counters.length).toBeGreaterThan(0);
    expect(counters.length).toBeLessThanOrEqual(16_384);
    expect(new Set(counters).size).toBe(counters.length);
    await closeClient(client);
  }, 70_000);

  it('a master SIGKILLed mid-run: only LockErrors, nothing hangs, and the work resumes on its slots', async () => {
    const keyPrefix = randomPrefix('cluster-failover');
    const { keys, masterPort } = await keysOnEveryMaster('fo', 2);
    const victim = await cluster.masterOf(clusterKeySlot(keys[0]!));
    const victimKeys = keys.filter((key) => masterPort.get(key) === victim.port);
    expect(victimKeys.length).toBe(2);
    const workers = [lockClient(keyPrefix), lockClient(keyPrefix)];

    let stop = false;
    let failedOver = Number.POSITIVE_INFINITY;
    const errors: unknown[] = [];
    /** Successful sections per key: [before the failover was over, after]. */
    const ok = new Map(keys.map((key) => [key, [0, 0]]));
    const STOP_BY = Date.now() + 35_000;
    const runs = workers.flatMap((client, c) =>
      Array.from({ length: 6 }, async (_, w) => {
        for (let i = 0; i < 100_000 && !stop && Date.now() < STOP_BY; i++) {
          const key = keys[(c + w + i) % keys.length]!;
          try {
            await client.using(key, { ttl: 2_000, wait: 3_000 }, () => sleep(5));
            ok.get(key)![Date.now() >= failedOver ? 1 : 0]!++;
          } catch (error) {
            errors.push(error);
            await sleep(20);
          }
        }
      }),
    );
    const all = Promise.all(runs);

    await sleep(1_000);
    const kill = Date.now();
    const promoted = await cluster.failover(victim, 20_000);
    failedOver = Date.now();
    expect(promoted.port).not.toBe(victim.port);
    // Let the work go on on the new topology for a while.
    await waitFor("work on the killed master's slots to resume", async () => victimKeys.every((key) => ok.get(key)![1]! >= 5), 15_000, 50);
    stop = true;
    const settled = await settle(all, 10_000);
    expect(settled.error).toBeUndefined();

    const notLockErrors = errors.filter((error) => !(error instanceof LockError)).map(String);
    console.log(
      `cluster failover: killed ${victim.port}, promoted ${promoted.port} after ${failedOver - kill} ms; ` +
        `${errors.length} LockErrors (${[...new Set(errors.map((e) => (e as Error).name))].join(', ')}); ` +
        `sections before/after: ${JSON.stringify(Object.fromEntries(ok))}`,
    );
    expect(notLockErrors).toEqual([]);
    for (const key of keys) expect(ok.get(key)![1]).toBeGreaterThan(0);
    // Fresh acquisitions on the killed master's slots succeed.
    for (const key of victimKeys) await (await workers[0]!.acquire(key, { ttl: 2_000, wait: 3_000 })).release();
    await Promise.all(workers.map(closeClient));
    // ioredis 6.0.0 itself: a sharded subscriber that failed to reconnect to the killed node leaves a
    // retry timer (ref'd, at most ~2.5 s) behind disconnect(). Let it run out, so Jest exits promptly.
    await sleep(3_000);
  }, 75_000);
});
