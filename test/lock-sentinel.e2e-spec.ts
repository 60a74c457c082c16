/**
 * The library on Redis Sentinel, through plain ioredis sentinel options (`{ sentinels, name }`), against
 * real private servers on loopback (test/helpers/redis-topologies.ts):
 *
 * 1. mutual exclusion from several LockClients (a non-atomic counter is exact under the lock, loses updates without);
 * 2. a forced failover (SENTINEL FAILOVER) in the middle of a locked workload;
 * 3. a crashed master (SIGKILL) in the middle of the same workload;
 * 4. `replicaAck`: a lock counts only once a replica has it; with the replica frozen, LockReplicaError and nothing left.
 *
 * The fenced resource of tests 2 and 3 lives on a separate plain redis-server, not on the sentinel-managed
 * set: it stands for the downstream system the lock protects, which does not fail over with the lock
 * store. On the failing-over set itself, an asynchronously replicated write of the resource could be lost
 * by the failover, and the test could no longer tell a lock fault from a Redis durability one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { LockError, LockReplicaError, type LockClient } from 'nestjs-redis-lock';
import { createLockClient } from '../libs/lock/src/lock.module-definition.js';
import { fencedWrite, readFenced } from './fixtures/fenced-resource.js';
import { keysMatching, randomPrefix } from './fixtures/lock-e2e-utils.js';
import { withoutCounters } from './helpers/lock-keys.js';
import { startRedis, stopAll, type RedisServerHandle } from './helpers/redis-server.js';
import { startSentinel, stopAllTopologies, type SentinelHandle } from './helpers/redis-topologies.js';

/** LockClients racing in every test. */
const CLIENTS = 3;
/** Concurrent loops per client in the failover workloads. */
const LOOPS = 2;
/** Increments per client in the counter race. */
const INCREMENTS = 20;

const clients: LockClient[] = [];
const admins: Redis[] = [];

/** A LockClient on the set through sentinel options, closed in afterEach. */
function lockClient(set: SentinelHandle, keyPrefix: string, extra: Parameters<typeof createLockClient>[0] = {}): LockClient {
  const client = createLockClient({ redis: { sentinels: [...set.sentinels], name: set.name }, keyPrefix, connectTimeout: 1_000, ...extra });
  clients.push(client);
  return client;
}

/** A plain ioredis client, closed in afterEach. */
function admin(url: string | { sentinels: { host: string; port: number }[]; name: string }): Redis {
  const redis = typeof url === 'string' ? new Redis(url, { maxRetriesPerRequest: 2 }) : new Redis({ ...url, maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined);
  admins.push(redis);
  return redis;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close().catch(() => undefined)));
  await Promise.all(admins.splice(0).map((redis) => redis.quit().catch(() => redis.disconnect())));
});

afterAll(async () => {
  await stopAllTopologies();
  await stopAll();
});

describe('lock on Redis Sentinel (e2e)', () => {
  it('counter: exact under the lock from several sentinel-connected LockClients, lost updates without', async () => {
    const set = await startSentinel();
    const keyPrefix = randomPrefix('sentinel-race');
    const locks = Array.from({ length: CLIENTS }, () => lockClient(set, keyPrefix));
    const redis = admin({ sentinels: [...set.sentinels], name: set.name });

    /** GET, a pause, SET: an increment that loses updates whenever two overlap. */
    const increment = async (key: string): Promise<void> => {
      const value = Number((await redis.get(key)) ?? 0);
      await sleep(1);
      await redis.set(key, String(value + 1));
    };
    const race = async (locked: boolean): Promise<number> => {
      const key = `${keyPrefix}counter:${locked ? 'locked' : 'unlocked'}`;
      await Promise.all(
        locks.map(async (lock) => {
          await Promise.all(
            Array.from({ length: INCREMENTS }, () =>
              locked ? lock.using('counter', { ttl: 5_000, wait: 20_000 }, () => increment(key)) : increment(key),
            ),
          );
        }),
      );
      return Number(await redis.get(key));
    };

    expect(await race(true)).toBe(CLIENTS * INCREMENTS);
    expect(await race(false)).toBeLessThan(CLIENTS * INCREMENTS);
    // Every lock was released: only the fencing counter is left.
    expect(withoutCounters(await keysMatching(redis, `${keyPrefix}*`)).filter((key) => !key.includes('counter:'))).toEqual([]);
  }, 40_000);

  /** One critical section that succeeded: its fencing token, when the lock was taken, what the fenced write said. */
  interface Section {
    readonly token: number;
    readonly startedAt: number;
    readonly acquiredAt: number;
    readonly accepted: boolean;
  }

  interface WorkloadResult {
    readonly sections: Section[];
    readonly lockErrors: Map<string, number>;
    readonly otherErrors: unknown[];
    readonly overlaps: number;
    readonly failoverMs: number;
    readonly failoverStart: number;
    readonly failoverEnd: number;
    readonly resource: { value?: string; fence?: number };
    /** The fencing counters the new master holds for the prefix, after the run. */
    readonly newMasterCounters: number[];
    /** After the run: a lock held by a workload client, then tried by a fresh client: did the fresh one get it too? */
    readonly freshClientTookHeldLock: boolean;
  }

  /**
   * CLIENTS x LOOPS loops take the lock on one key and, holding it, do a read-modify-write of the fenced
   * resource (read the count, write count + 1 with the lock's fencing token). After SETTLE_MS of work, `fault`
   * runs (a failover); the loops go on until RESUMED sections have completed after it, within a bound.
   */
  async function failoverWorkload(fault: (set: SentinelHandle) => Promise<RedisServerHandle>): Promise<WorkloadResult> {
    const SETTLE_MS = 1_500;
    const RESUMED = 30;
    const RESUME_BOUND_MS = 15_000;
    const MAX_ITERATIONS = 20_000;
    const set = await startSentinel();
    const resourceServer: RedisServerHandle = await startRedis();
    const resource = admin(resourceServer.url);
    const keyPrefix = randomPrefix('sentinel-failover');
    const resourceKey = `${keyPrefix}resource`;
    const locks = Array.from({ length: CLIENTS }, () => lockClient(set, keyPrefix));

    const sections: Section[] = [];
    const lockErrors = new Map<string, number>();
    const otherErrors: unknown[] = [];
    let inside = 0;
    let overlaps = 0;
    let stop = false;
    let failoverEnd = Infinity;
    const resumed = (): number => sections.filter((section) => section.startedAt > failoverEnd).length;

    const loop = async (lock: LockClient): Promise<void> => {
      for (let i = 0; i < MAX_ITERATIONS && !stop; i++) {
        const startedAt = Date.now();
        try {
          await lock.using('job', { ttl: 2_000, wait: 1_500 }, async (held) => {
            const acquiredAt = Date.now();
            if (++inside > 1) overlaps++;
            try {
              const { value } = await readFenced(resource, resourceKey);
              const { accepted } = await fencedWrite(resource, resourceKey, held.fencingToken, String(Number(value ?? 0) + 1));
              sections.push({ token: held.fencingToken, startedAt, acquiredAt, accepted });
            } finally {
              inside--;
            }
          });
        } catch (error) {
          if (error instanceof LockError) {
            lockErrors.set(error.name, (lockErrors.get(error.name) ?? 0) + 1);
            await sleep(20);
          } else {
            otherErrors.push(error);
            return;
          }
        }
      }
    };

    const loops = locks.flatMap((lock) => Array.from({ length: LOOPS }, () => loop(lock)));
    let newMaster: RedisServerHandle | undefined;
    const oldMaster = await set.master();
    let failoverStart: number;
    try {
      await sleep(SETTLE_MS);
      failoverStart = Date.now();
      newMaster = await fault(set);
      failoverEnd = Date.now();
      for (let i = 0; i < RESUME_BOUND_MS / 50 && resumed() < RESUMED && otherErrors.length === 0; i++) await sleep(50);
    } finally {
      stop = true;
      await Promise.all(loops);
    }
    const onNewMaster = admin(newMaster!.url);
    const counterKeys = (await keysMatching(onNewMaster, `${keyPrefix}*`)).filter((key) => !withoutCounters([key]).length);
    const newMasterCounters = await Promise.all(counterKeys.map(async (key) => Number(await onNewMaster.get(key))));
    const onOld = admin(oldMaster.url);
    const oldState = await Promise.race([
      Promise.all([onOld.role(), ...counterKeys.map((key) => onOld.get(key))]).then(
        (reply) => JSON.stringify(reply),
        (error: Error) => error.message,
      ),
      sleep(1_000).then(() => 'no answer'),
    ]);
    console.log(
      `old master ${oldMaster.port} after the run: ${oldState}; new master ${newMaster!.port}: ${JSON.stringify(newMasterCounters)}`,
    );
    // Mutual exclusion across the failover: a lock held by a workload client is busy for a client that connects now.
    const probe = await locks[0]!.acquire('probe', { ttl: 5_000, wait: 2_000 });
    const fresh = await lockClient(set, keyPrefix).tryAcquire('probe', { ttl: 5_000 });
    const freshClientTookHeldLock = fresh !== null;
    await fresh?.release();
    await probe.release();
    return {
      freshClientTookHeldLock,
      newMasterCounters,
      sections,
      lockErrors,
      otherErrors,
      overlaps,
      failoverMs: failoverEnd - failoverStart,
      failoverStart,
      failoverEnd,
      resource: await readFenced(resource, resourceKey),
    };
  }

  function checkWorkload(label: string, result: WorkloadResult): void {
    const { sections, lockErrors, otherErrors, overlaps, failoverStart, failoverEnd, resource } = result;
    const before = sections.filter((section) => section.acquiredAt < failoverStart);
    const after = sections.filter((section) => section.startedAt > failoverEnd);
    const accepted = sections.filter((section) => section.accepted);
    const maxBefore = Math.max(...before.map((section) => section.token));
    const minAfter = Math.min(...after.map((section) => section.token));
    console.log(
      `${label}: failover ${result.failoverMs} ms; sections ${sections.length} (${before.length} before, ${after.length} after), ` +
        `refused ${sections.length - accepted.length}, overlaps ${overlaps}; lock errors ${JSON.stringify(Object.fromEntries(lockErrors))}; ` +
        `token jump ${minAfter - maxBefore} (max before ${maxBefore}, min after ${minAfter})`,
    );
    // Every failure of the workload was a LockError.
    expect(otherErrors).toEqual([]);
    // Work went on before, and resumed after, the failover.
    expect(before.length).toBeGreaterThan(10);
    expect(after.length).toBeGreaterThanOrEqual(30);
    // Nothing lost: the resource's count is the number of writes it accepted, its fence the highest token.
    expect(Number(resource.value)).toBe(accepted.length);
    expect(resource.fence).toBe(Math.max(...accepted.map((section) => section.token)));
    // No two holders at once, so the fenced resource never had to refuse a write.
    expect({ overlaps, refused: sections.length - accepted.length }).toEqual({ overlaps: 0, refused: 0 });
    // Fencing tokens: every one after the failover above every one before it; each holder's above the previous holder's.
    expect(minAfter).toBeGreaterThan(maxBefore);
    // A deposed primary stays a writable master for ~10 s after SENTINEL FAILOVER (Redis does not drop
    // its clients): the module's Sentinel clients use ioredis' failoverDetector to leave it at once.
    // Without it, the work "after" ran on the old master and a new client took a lock that was held.
    // The work after the failover ran on the new master: its fencing counter went up to the last token.
    expect(result.newMasterCounters).toHaveLength(1);
    expect({
      newMasterCounterReachedLastToken: result.newMasterCounters[0]! >= Math.max(...after.map((section) => section.token)),
      freshClientTookHeldLock: result.freshClientTookHeldLock,
    }).toEqual({ newMasterCounterReachedLastToken: true, freshClientTookHeldLock: false });
    const byAcquisition = [...sections].sort((a, b) => a.acquiredAt - b.acquiredAt);
    const decreasing = byAcquisition.filter((section, i) => i > 0 && section.token <= byAcquisition[i - 1]!.token);
    expect(decreasing).toEqual([]);
  }

  it('SENTINEL FAILOVER mid-run: failures are LockErrors, work resumes, fenced writes lose nothing, tokens keep increasing', async () => {
    const result = await failoverWorkload((set) => set.failover());
    checkWorkload('SENTINEL FAILOVER', result);
  }, 45_000);

  it('SIGKILLed master mid-run: failures are LockErrors, work resumes, fenced writes lose nothing, tokens keep increasing', async () => {
    const result = await failoverWorkload((set) => set.killMaster());
    checkWorkload('SIGKILL master', result);
  }, 45_000);

  it('replicaAck: locks succeed with the replica up; with it frozen, LockReplicaError naming the requirement and no lock key left', async () => {
    const set = await startSentinel();
    const keyPrefix = randomPrefix('sentinel-ack');
    const lock = lockClient(set, keyPrefix, { replicaAck: { replicas: 1, timeout: 200 } });
    const master = await set.master();
    const replica = set.servers.find((server) => server !== master)!;
    const direct = admin(master.url);
    const onReplica = admin(replica.url);

    for (let i = 0; i < 5; i++) {
      const held = await lock.acquire(`healthy-${i}`, { ttl: 5_000, wait: 1_000 });
      // Acknowledged by the replica before acquire() returned: the replica holds the lock key already.
      expect(await onReplica.get(`${keyPrefix}{healthy-${i}}`)).not.toBeNull();
      expect(await held.release()).toBe(true);
    }

    process.kill(replica.pid, 'SIGSTOP');
    let error: unknown;
    let elapsed: number;
    try {
      const started = Date.now();
      error = await lock.acquire('frozen', { ttl: 5_000, wait: 500 }).then(
        (held) => held,
        (failure: unknown) => failure,
      );
      elapsed = Date.now() - started;
    } finally {
      process.kill(replica.pid, 'SIGCONT');
    }
    console.log(`replicaAck with the replica frozen: rejected after ${elapsed} ms: ${String(error)}`);
    expect(error).toBeInstanceOf(LockReplicaError);
    const replicaError = error as LockReplicaError;
    expect(replicaError.message).toMatch(/replicaAck requires 1 replica acknowledgement within 200 ms, 0 acknowledged/);
    expect({ required: replicaError.required, acknowledged: replicaError.acknowledged, keys: replicaError.keys }).toEqual({
      required: 1,
      acknowledged: 0,
      keys: ['frozen'],
    });
    // Within the wait, plus at most one attempt's WAIT and the give-back.
    expect(elapsed).toBeGreaterThanOrEqual(450);
    expect(elapsed).toBeLessThan(2_000);
    expect(withoutCounters(await keysMatching(direct, `${keyPrefix}*`))).toEqual([]);
    expect(await lock.isLocked('frozen')).toBe(false);

    // The replica back: locks count again.
    const again = await lock.acquire('frozen', { ttl: 5_000, wait: 3_000 });
    expect(again.fencingToken).toBeGreaterThan(0);
    expect(await again.release()).toBe(true);
  }, 40_000);

  // Under replicaAck a release must never hand the lock to a waiter (that grant would have no WAIT):
  // waiters do not queue, they are told of the release and take the lock with an acknowledged acquire.
  // Before that, the waiter here got a lock no replica held.
  it('replicaAck: a waiter is not handed a lock by a release while the replica is frozen', async () => {
    const set = await startSentinel();
    const keyPrefix = randomPrefix('sentinel-ack-handoff');
    const lock = lockClient(set, keyPrefix, { replicaAck: { replicas: 1, timeout: 200 } });
    const other = lockClient(set, keyPrefix, { replicaAck: { replicas: 1, timeout: 200 } });
    const master = await set.master();
    const replica = set.servers.find((server) => server !== master)!;
    const direct = admin(master.url);

    const holder = await other.acquire('handoff', { ttl: 10_000 });
    // The waiter waits while the replica is healthy (its attempts see the lock busy). Under replicaAck
    // it does not join a queue: a release would hand it the lock without a WAIT.
    const waiting = lock.acquire('handoff', { ttl: 10_000, wait: 2_000 }).then(
      (held) => held,
      (failure: unknown) => failure,
    );
    await sleep(500);
    expect(await direct.exists(`${keyPrefix}{handoff}:q`)).toBe(0);
    process.kill(replica.pid, 'SIGSTOP');
    let outcome: unknown;
    let masterValue: string | null;
    try {
      expect(await holder.release()).toBe(true);
      outcome = await waiting;
      // Read while the replica is still frozen: whatever the waiter holds now, no replica can have acknowledged it.
      masterValue = outcome instanceof LockError ? null : await direct.get(`${keyPrefix}{handoff}`);
    } finally {
      process.kill(replica.pid, 'SIGCONT');
    }
    console.log(`hand-off with the replica frozen: ${outcome instanceof LockError ? String(outcome) : `granted, key ${masterValue}`}`);
    if (!(outcome instanceof LockError)) await (outcome as { release(): Promise<boolean> }).release();
    expect(outcome).toBeInstanceOf(LockReplicaError);
    expect(withoutCounters(await keysMatching(direct, `${keyPrefix}*`))).toEqual([]);
  }, 30_000);
});
