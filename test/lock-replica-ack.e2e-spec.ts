/**
 * `replicaAck` under real faults, black-box through `createLockClient`, on private servers on loopback:
 *
 * 1. one primary + one replica (`--replicaof`), the client behind a TCP proxy: an acquire whose reply is
 *    lost on the wire (its connection cut) is re-sent by ioredis and finds the lock already its own; with
 *    the replica frozen (SIGSTOP) the caller must still get `LockReplicaError`, never a lock no replica has;
 *    and the premise of that test shown on the servers themselves (with the replica frozen a write is not
 *    acknowledged, and without replicaAck the lock is granted all the same);
 * 2. Redis Cluster (3 masters + 3 replicas): (a) healthy replicas: keys of every master are granted, each
 *    already on its master's replica; (b) one master's replica frozen: that master's keys end with
 *    `LockReplicaError` while the other masters' keys are granted at the same time; (c) a slot that moved,
 *    by a migration (ASK and TRYAGAIN while it lasts, then MOVED) or by `CLUSTER FAILOVER` (MOVED): the
 *    acquisition still succeeds within the wait, the caller never sees a redirection.
 *
 * Faults are real: SIGSTOP/SIGCONT of a replica's pid, a proxy that swallows a reply and cuts the
 * connection, CLUSTER SETSLOT/MIGRATE, CLUSTER FAILOVER. Each test also checks that its fault really
 * happened (the acquire ran twice on two connections; the stale node got the acknowledged pipeline), so
 * that a pass cannot come from a path the test did not take.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { LockReplicaError, type LockClient, type LockModuleOptions } from 'nestjs-redis-lock';
import { createLockClient } from '../libs/lock/src/lock.module-definition.js';
import { keysMatching, randomPrefix, settle, type Settled, waitFor } from './fixtures/lock-e2e-utils.js';
import { frozen } from './fixtures/fault-utils.js';
import { withoutCounters } from './helpers/lock-keys.js';
import { startRedis, stopAll, type RedisServerHandle } from './helpers/redis-server.js';
import { type ClusterHandle, clusterKeySlot, startCluster, stopAllTopologies } from './helpers/redis-topologies.js';
import { closeAllProxies, startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

type Held = Awaited<ReturnType<LockClient['acquire']>>;

/** Replicas sync at once and over the socket (as in test/helpers/redis-topologies.ts). */
const REPLICATION_ARGS = ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0', '--repl-diskless-load', 'swapdb'];

const clients: LockClient[] = [];
/** Plain connections of one test, closed in afterEach. */
const admins: Redis[] = [];
/** Plain connections of one describe block, closed by its afterAll. */
const fileAdmins: Redis[] = [];

function lockClient(options: LockModuleOptions): LockClient {
  const client = createLockClient(options);
  clients.push(client);
  return client;
}

function admin(url: string, scope: 'test' | 'block' = 'test'): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 2, connectTimeout: 2_000 });
  redis.on('error', () => undefined);
  (scope === 'test' ? admins : fileAdmins).push(redis);
  return redis;
}

async function closeAdmins(list: Redis[]): Promise<void> {
  await Promise.all(list.splice(0).map((redis) => settle(redis.quit(), 2_000).finally(() => redis.disconnect())));
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => settle(client.close(), 5_000)));
  await closeAdmins(admins);
});

afterAll(async () => {
  await closeAdmins(fileAdmins);
  await closeAllProxies();
  await stopAllTopologies();
  await stopAll();
}, 30_000);

/** One INFO section as name → value. */
async function info(redis: Redis, section: string): Promise<Record<string, string>> {
  const fields: Record<string, string> = {};
  for (const line of String(await redis.info(section)).split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) fields[line.slice(0, at)] = line.slice(at + 1);
  }
  return fields;
}

/** `calls + rejected_calls` of a command (INFO commandstats), and the count of an error prefix (INFO errorstats). */
async function serverCounts(redis: Redis, command: string, errorPrefix: string): Promise<{ command: number; error: number }> {
  const stats = await info(redis, 'commandstats');
  const line = stats[`cmdstat_${command}`] ?? '';
  const field = (name: string) => Number(new RegExp(`(?:^|,)${name}=(\\d+)`).exec(line)?.[1] ?? 0);
  const errors = await info(redis, 'errorstats');
  const error = Number(/count=(\d+)/.exec(errors[`errorstat_${errorPrefix}`] ?? '')?.[1] ?? 0);
  return { command: field('calls') + field('rejected_calls'), error };
}

const nameOf = (error: unknown): string | undefined =>
  error === undefined ? undefined : error instanceof Error ? error.name : typeof error;

/** "Name: message" of an error. */
const errorText = (error: unknown): string => (error instanceof Error ? `${error.name}: ${error.message}` : JSON.stringify(error));

/** The lock key of `key` (the library's layout: the key is the hash tag). */
const lockKey = (keyPrefix: string, key: string): string => `${keyPrefix}{${key}}`;

// ---------------------------------------------------------------------------------------------------------------
// 1. A re-sent acquire, one primary + one replica
// ---------------------------------------------------------------------------------------------------------------

describe('replicaAck: an acquire re-sent after its reply was lost (primary + 1 replica, e2e)', () => {
  const TIMEOUT = 200;
  let primary: RedisServerHandle;
  let replica: RedisServerHandle;
  let direct: Redis;
  let onReplica: Redis;

  beforeAll(async () => {
    primary = await startRedis({ args: REPLICATION_ARGS });
    replica = await startRedis({ args: [...REPLICATION_ARGS, '--replicaof', primary.host, String(primary.port)] });
    direct = admin(primary.url, 'block');
    onReplica = admin(replica.url, 'block');
    await waitFor(
      'the replica to sync',
      async () =>
        (await info(onReplica, 'replication')).master_link_status === 'up' &&
        /state=online/.test((await info(direct, 'replication')).slave0 ?? ''),
      15_000,
      100,
    );
  }, 30_000);

  afterAll(async () => {
    await closeAdmins(fileAdmins);
    await primary?.stop();
    await replica?.stop();
  });

  // Why the re-sent case matters. WAIT counts the replicas that acknowledged the calling connection's
  // replication offset. A re-sent acquire that found the lock already its own and wrote nothing would leave
  // that offset where the new connection's last command put it: on Redis 7.0 (which sets it after every
  // command) that still waits for the replica, but a server that moves it only on writes (and a replica
  // that acknowledged everything before it froze) answers at once, so the library does not rely on it: an
  // acquire that finds the lock its own rewrites the ttl, a write the WAIT must see replicated. What this
  // test shows on the servers themselves: with the replica frozen, a write is not acknowledged (WAIT gives
  // 0), and without replicaAck the lock is granted all the same.
  it('the premise: with the replica frozen, a write is not acknowledged; without replicaAck the lock is granted', async () => {
    const keyPrefix = randomPrefix('ack-premise');
    const plain = lockClient({ redis: primary.url, keyPrefix, connectTimeout: 1_000 });
    expect(await (await plain.acquire('warm', { ttl: 5_000 })).release()).toBe(true);
    const writer = admin(primary.url);
    await writer.ping();

    const seen = await frozen(replica, async () => {
      await writer.set(`${keyPrefix}probe`, 'x');
      const writerWait = Number(await writer.call('WAIT', '1', String(TIMEOUT)));
      const held = await plain.tryAcquire('unsafe', { ttl: 5_000 });
      const released = held ? await held.release() : undefined;
      return { writerWait, grantedWithoutReplicaAck: held !== null, released };
    });
    await direct.del(`${keyPrefix}probe`);
    console.log(`premise, replica frozen: ${JSON.stringify(seen)}`);
    expect(seen).toEqual({ writerWait: 0, grantedWithoutReplicaAck: true, released: true });
    // Control: with the replica running, the same write is acknowledged.
    await writer.set(`${keyPrefix}probe`, 'y');
    expect(Number(await writer.call('WAIT', '1', '3000'))).toBe(1);
    await direct.del(`${keyPrefix}probe`);
  }, 20_000);

  /** One EVALSHA/EVAL on the lock key, as MONITOR on the primary saw it. */
  interface ScriptCall {
    readonly sha: string;
    readonly source: string;
    readonly token: string | undefined;
  }

  it.each([
    ['tryAcquire()', (lock: LockClient, key: string) => lock.tryAcquire(key, { ttl: 10_000 }), 0],
    ['acquire() with a 1 s wait', (lock: LockClient, key: string) => lock.acquire(key, { ttl: 10_000, wait: 1_000 }), 1_000],
  ])(
    '%s: with the replica frozen, LockReplicaError (no lock) although the re-sent acquire found the lock its own; granted after SIGCONT',
    async (_name, take, wait) => {
      const CONNECT_TIMEOUT = 1_000;
      const keyPrefix = randomPrefix('ack-resent');
      const key = 'resent';
      const proxy: TcpProxy = await startTcpProxy({ targetPort: primary.port });
      try {
        const lock = lockClient({
          redis: proxy.url,
          keyPrefix,
          replicaAck: { replicas: 1, timeout: TIMEOUT },
          connectTimeout: CONNECT_TIMEOUT,
        });
        // Warm-up: the acknowledged connection is open and the scripts are cached, so the next reply of
        // the acquire script is the one of the attempt under test.
        const warm = await lock.acquire('warm', { ttl: 5_000, wait: 3_000 });
        expect((await onReplica.get(lockKey(keyPrefix, 'warm')))?.startsWith(`${warm.token}:`)).toBe(true);
        expect(await warm.release()).toBe(true);

        // MONITOR, straight on the primary (not through the proxy): every script run on the lock key.
        const calls: ScriptCall[] = [];
        const monitor = await direct.monitor();
        monitor.on('error', () => undefined);
        // The commands the scripts themselves ran on the lock key (MONITOR shows them too): the re-sent
        // acquire's rewrite of the ttl is a PEXPIRE, the write its WAIT must see replicated.
        let ttlRewrites = 0;
        monitor.on('monitor', (_time: string, args: string[], source: string) => {
          const [command = '', script = '', numkeys = '0', ...rest] = args;
          if (/^pexpire$/i.test(command) && script === lockKey(keyPrefix, key)) ttlRewrites++;
          if (!/^eval(sha)?$/i.test(command)) return;
          const keys = rest.slice(0, Number(numkeys));
          if (!keys.includes(lockKey(keyPrefix, key))) return;
          const sha = command.toLowerCase() === 'eval' ? createHash('sha1').update(script).digest('hex') : script.toLowerCase();
          calls.push({ sha, source, token: rest[Number(numkeys)] });
        });
        const acceptedBefore = proxy.accepted;

        let outcome: Settled<Held | null>;
        let dropped: Awaited<ReturnType<TcpProxy['dropNextReply']>>;
        let leftover: string[];
        try {
          ({ outcome, dropped, leftover } = await frozen(replica, async () => {
            // The first successful acquire reply ({1, fence}) is swallowed and its connection cut: the
            // primary has run the script (the lock is written), the client never saw it and re-sends
            // the script and its WAIT on a new connection, where the script answers "already yours".
            const drop = proxy.dropNextReply({ match: (chunk) => chunk.toString('latin1').startsWith('*2\r\n:1\r\n'), timeoutMs: 5_000 });
            const result = await settle(take(lock, key), 10_000);
            const lost = await Promise.race([drop, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 100))]);
            // Read while the replica is still frozen: nothing of the refused acquisition is left.
            const left = withoutCounters(await keysMatching(direct, `${keyPrefix}*`));
            return { outcome: result, dropped: lost, leftover: left };
          }));
        } finally {
          monitor.disconnect();
        }

        // The re-send path really ran: the acquire script (the first script on the key) ran twice with
        // the same token on two different connections before any other script on the key (the give-back),
        // and the proxy saw a reconnect. A retry by the engine would come after the give-back.
        const acquireSha = calls[0]?.sha;
        const firstOther = calls.findIndex((call) => call.sha !== acquireSha);
        const acquires = calls.slice(0, firstOther < 0 ? calls.length : firstOther);
        const resent = acquires.length >= 2 && acquires[0]!.token === acquires[1]!.token && acquires[0]!.source !== acquires[1]!.source;
        console.log(
          `re-sent acquire (${_name}), replica frozen: ${outcome.error ? errorText(outcome.error) : `granted ${outcome.value?.token}`} ` +
            `after ${outcome.ms} ms; dropped ${JSON.stringify(dropped?.preview)}; scripts on the key: ` +
            `${JSON.stringify(calls.map((call) => `${call.sha.slice(0, 8)}@${call.source}`))}`,
        );
        if (outcome.value) await outcome.value.release();
        expect({
          replyDropped: dropped !== undefined,
          reconnected: proxy.accepted > acceptedBefore,
          acquireRanTwiceOnTwoConnections: resent,
          reSentAcquireRewroteTheTtl: ttlRewrites > 0,
          outcome: nameOf(outcome.error) ?? (outcome.value ? 'a lock no replica acknowledged' : 'null'),
          leftover,
        }).toEqual({
          replyDropped: true,
          reconnected: true,
          acquireRanTwiceOnTwoConnections: true,
          reSentAcquireRewroteTheTtl: true,
          outcome: 'LockReplicaError',
          leftover: [],
        });
        expect(outcome.error).toBeInstanceOf(LockReplicaError);
        expect((outcome.error as Error).message).toMatch(
          new RegExp(`replicaAck requires 1 replica acknowledgement within ${TIMEOUT} ms, 0 acknowledged`),
        );
        // Bounded (orders of magnitude): within the wait plus the connect bound, with slack for CI.
        expect(outcome.ms).toBeLessThan(wait + CONNECT_TIMEOUT + 3_000);

        // The replica back: the lock is granted again, and the replica has it by then.
        const again = await lock.acquire(key, { ttl: 5_000, wait: 5_000 });
        expect((await onReplica.get(lockKey(keyPrefix, key)))?.startsWith(`${again.token}:`)).toBe(true);
        expect(await again.release()).toBe(true);
      } finally {
        await proxy.close();
      }
    },
    30_000,
  );
});

// ---------------------------------------------------------------------------------------------------------------
// 2. Redis Cluster
// ---------------------------------------------------------------------------------------------------------------

describe('replicaAck on Redis Cluster (3 masters + 3 replicas, e2e)', () => {
  const ACK = { replicas: 1, timeout: 300 } as const;
  let cluster: ClusterHandle;

  beforeAll(async () => {
    cluster = await startCluster();
  }, 60_000);

  afterAll(async () => {
    await closeAdmins(fileAdmins);
    await cluster?.stop();
  }, 30_000);

  function clusterLock(keyPrefix: string, replicaAck = true): LockClient {
    return lockClient({
      redis: { cluster: [...cluster.urls] },
      keyPrefix,
      connectTimeout: 2_000,
      ...(replicaAck ? { replicaAck: ACK } : {}),
    });
  }

  /** The port of the master serving each slot, from CLUSTER SLOTS of one node. */
  async function slotOwners(): Promise<(slot: number) => number | undefined> {
    const ranges = (await admin(cluster.urls[0]!).call('CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][];
    return (slot) => ranges.find(([start, end]) => slot >= start && slot <= end)?.[2][1];
  }

  /** `count` keys `<stem>-<n>` served by each given master, each in a slot of its own (and not in `avoid`). */
  async function keysOn(
    masters: readonly RedisServerHandle[],
    stem: string,
    count: number,
    avoid: ReadonlySet<number> = new Set(),
  ): Promise<Map<number, string[]>> {
    const owner = await slotOwners();
    const found = new Map(masters.map((master) => [master.port, [] as string[]]));
    const slots = new Set(avoid);
    for (let n = 0; n < 5_000 && [...found.values()].some((keys) => keys.length < count); n++) {
      const key = `${stem}-${n}`;
      const slot = clusterKeySlot(key);
      const keys = found.get(owner(slot) ?? -1);
      if (slots.has(slot) || !keys || keys.length >= count) continue;
      slots.add(slot);
      keys.push(key);
    }
    for (const [port, keys] of found) expect({ port, keys: keys.length }).toEqual({ port, keys: count });
    return found;
  }

  /** The replica that replicates `master` now (ROLE). */
  async function replicaOf(master: RedisServerHandle): Promise<RedisServerHandle> {
    for (const node of await cluster.replicas()) {
      const role = (await admin(node.url).call('ROLE')) as [string, string, number];
      if (role[0] === 'slave' && Number(role[2]) === master.port) return node;
    }
    throw new Error(`no replica of ${master.port}`);
  }

  /** A connection to a replica that may read its master's slots. */
  async function replicaReader(replica: RedisServerHandle): Promise<Redis> {
    const redis = admin(replica.url);
    await redis.call('READONLY');
    return redis;
  }

  /** Lock and queue keys under `keyPrefix` on a node (fencing counters left out). */
  async function lockKeysOn(node: RedisServerHandle, keyPrefix: string): Promise<string[]> {
    return withoutCounters(await keysMatching(admin(node.url), `${keyPrefix}*`));
  }

  it('(a) healthy replicas: keys of every master are granted (on the replica by then) and released, never a LockReplicaError', async () => {
    await cluster.waitHealthy();
    const keyPrefix = randomPrefix('cl-ack-healthy');
    const lock = clusterLock(keyPrefix);
    const masters = await cluster.masters();
    expect(masters).toHaveLength(3);
    const byMaster = await keysOn(masters, 'healthy', 3);
    const readers = new Map(
      await Promise.all(masters.map(async (master) => [master.port, await replicaReader(await replicaOf(master))] as const)),
    );
    const errors: string[] = [];
    const notOnReplica: string[] = [];
    let granted = 0;
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        [...byMaster].flatMap(([port, keys]) =>
          keys.map(async (key) => {
            try {
              const held = await lock.acquire(key, { ttl: 5_000, wait: 3_000 });
              granted++;
              // Acknowledged before acquire() returned: the master's replica holds the lock already.
              const value = await readers.get(port)!.get(lockKey(keyPrefix, key));
              if (!value?.startsWith(`${held.token}:`)) notOnReplica.push(`${key}@${port}: ${value}`);
              if (!(await held.release())) errors.push(`${key}: release() false`);
            } catch (error) {
              errors.push(`${key}@${port}: ${nameOf(error)}: ${(error as Error).message}`);
            }
          }),
        ),
      );
    }
    const total = [...byMaster.values()].flat().length;
    expect({ errors, notOnReplica, granted }).toEqual({ errors: [], notOnReplica: [], granted: 3 * total });
    for (const master of masters) expect(await lockKeysOn(master, keyPrefix)).toEqual([]);
  }, 30_000);

  it("(b) one master's replica frozen: its keys end with LockReplicaError within the wait, the other masters' keys are granted meanwhile; after SIGCONT all are granted", async () => {
    const WAIT = 800;
    await cluster.waitHealthy();
    const keyPrefix = randomPrefix('cl-ack-frozen');
    const lock = clusterLock(keyPrefix);
    const plain = clusterLock(keyPrefix, false);
    const masters = await cluster.masters();
    const [stuck, ...others] = masters;
    const stuckReplica = await replicaOf(stuck!);
    const byMaster = await keysOn(masters, 'frozen', 4);
    // The last key of the stuck master is for the client without replicaAck.
    const unsafeKey = byMaster.get(stuck!.port)!.pop()!;
    // Warm-up on every master (connections open, scripts cached), replicas healthy.
    for (const keys of byMaster.values()) {
      await (await lock.acquire(keys[0]!, { ttl: 5_000, wait: 3_000 })).release();
      await (await plain.acquire(keys[0]!, { ttl: 5_000, wait: 3_000 })).release();
    }

    interface Attempt {
      readonly key: string;
      readonly port: number;
      readonly outcome: string;
      readonly message?: string;
      readonly ms: number;
    }
    const { attempts, unsafeGranted, leftover } = await frozen(stuckReplica, async () => {
      const all = await Promise.all(
        [...byMaster].flatMap(([port, keys]) =>
          keys.map(async (key): Promise<Attempt> => {
            const result = await settle(lock.acquire(key, { ttl: 5_000, wait: WAIT }), 15_000);
            if (result.value) await result.value.release();
            return {
              key,
              port,
              outcome: result.value ? 'granted' : (nameOf(result.error) ?? '?'),
              message: (result.error as Error | undefined)?.message,
              ms: result.ms,
            };
          }),
        ),
      );
      // The unsafe default, for contrast: without replicaAck the stuck master's key is granted anyway.
      const held = await plain.tryAcquire(unsafeKey, { ttl: 5_000 });
      if (held) await held.release();
      return { attempts: all, unsafeGranted: held !== null, leftover: await lockKeysOn(stuck!, keyPrefix) };
    });
    console.log(
      `cluster, replica ${stuckReplica.port} of ${stuck!.port} frozen: ` +
        attempts.map((a) => `${a.key}@${a.port}: ${a.outcome} ${a.ms} ms`).join('; ') +
        `; without replicaAck: ${unsafeGranted ? 'granted' : 'refused'}`,
    );
    const onStuck = attempts.filter((a) => a.port === stuck!.port);
    const onOthers = attempts.filter((a) => a.port !== stuck!.port);
    expect(onStuck.map((a) => a.outcome)).toEqual(onStuck.map(() => 'LockReplicaError'));
    for (const a of onStuck) {
      expect(a.message).toMatch(new RegExp(`replicaAck requires 1 replica acknowledgement within ${ACK.timeout} ms, 0 acknowledged`));
      // Retried within the wait, then given up: within wait + WAIT timeout (+ the connect bound and CI slack).
      expect(a.ms).toBeGreaterThanOrEqual(WAIT - 100);
      expect(a.ms).toBeLessThan(WAIT + ACK.timeout + 2_000 + 3_000);
    }
    expect(onOthers.map((a) => `${a.key}: ${a.outcome}`)).toEqual(onOthers.map((a) => `${a.key}: granted`));
    expect(others.length).toBe(2);
    expect({ unsafeGranted, leftover }).toEqual({ unsafeGranted: true, leftover: [] });

    // The replica back: the stuck master's keys are granted again.
    const again: string[] = [];
    for (const key of byMaster.get(stuck!.port)!) {
      const result = await settle(lock.acquire(key, { ttl: 5_000, wait: 5_000 }), 15_000);
      again.push(result.value ? 'granted' : `${nameOf(result.error)}: ${(result.error as Error).message}`);
      if (result.value) await result.value.release();
    }
    expect(again).toEqual(byMaster.get(stuck!.port)!.map(() => 'granted'));
    await cluster.waitHealthy(20_000);
  }, 45_000);

  /** A connection to a cluster node for admin commands, and its node id. */
  async function nodeAdmin(node: RedisServerHandle): Promise<{ redis: Redis; id: string }> {
    const redis = admin(node.url);
    return { redis, id: String(await redis.call('CLUSTER', 'MYID')) };
  }

  // Mid-migration, a script that creates a key of the slot cannot run anywhere: the source answers ASK
  // (the slot's counter has moved) and the target answers TRYAGAIN (a multi-key request with a key it does
  // not have yet). Redis Cluster resolves that only when the migration ends, so the acquisition must keep
  // retrying within its wait and be granted once the slot is settled: never a redirection error.
  it('(c) a slot migrated to another master: an acquisition started mid-migration (ASK, TRYAGAIN) is granted when it ends, and after it (stale map, MOVED)', async () => {
    await cluster.waitHealthy();
    const keyPrefix = randomPrefix('cl-ack-migrate');
    const lock = clusterLock(keyPrefix);
    const masters = await cluster.masters();
    const [source, target] = masters;
    const key = (await keysOn([source!], 'migrate', 1)).get(source!.port)![0]!;
    const slot = clusterKeySlot(key);
    // Warm-up: the client learns that the slot is on `source`; the slot's fencing counter is written there.
    const first = await lock.acquire(key, { ttl: 5_000, wait: 3_000 });
    expect(await first.release()).toBe(true);
    // A second client that learns the same map now and keeps it: after the migration it still sends the
    // slot to the source (MOVED).
    const late = clusterLock(keyPrefix);
    expect(await (await late.acquire(key, { ttl: 5_000, wait: 3_000 })).release()).toBe(true);

    const from = await nodeAdmin(source!);
    const to = await nodeAdmin(target!);
    const migrateKeys = async (): Promise<number> => {
      const keys = (await from.redis.call('CLUSTER', 'GETKEYSINSLOT', String(slot), '1000')) as string[];
      if (keys.length > 0) await from.redis.call('MIGRATE', target!.host, String(target!.port), '', '0', '5000', 'KEYS', ...keys);
      return keys.length;
    };
    // Ends the migration (once): every key of the slot on the target, the slot the target's on every master.
    // Also in `finally`, so that a failure here never leaves the cluster mid-migration for the next test.
    let ended = false;
    const endMigration = async (): Promise<void> => {
      if (ended) return;
      ended = true;
      await migrateKeys();
      await to.redis.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', to.id);
      await from.redis.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', to.id);
      for (const other of masters.slice(2)) await (await nodeAdmin(other)).redis.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', to.id);
    };
    let pending: Promise<Settled<Held>>;
    let askBefore: Awaited<ReturnType<typeof serverCounts>>;
    let askAfter: Awaited<ReturnType<typeof serverCounts>>;
    let tryAgainBefore: Awaited<ReturnType<typeof serverCounts>>;
    let tryAgainAfter: Awaited<ReturnType<typeof serverCounts>>;
    try {
      await to.redis.call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', from.id);
      await from.redis.call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', to.id);
      // Every key of the slot (the fencing counter) moves now: the source then answers ASK for the slot's keys.
      expect(await migrateKeys()).toBeGreaterThan(0);

      // Mid-migration: the acquire pipeline goes to the source (ASK), then to the target (TRYAGAIN), again
      // and again, until the migration ends 600 ms later; the wait (4 s) covers that.
      askBefore = await serverCounts(from.redis, 'wait', 'ASK');
      tryAgainBefore = await serverCounts(to.redis, 'evalsha', 'TRYAGAIN');
      pending = settle(lock.acquire(key, { ttl: 5_000, wait: 4_000 }), 15_000);
      await new Promise((resolve) => setTimeout(resolve, 600));
      askAfter = await serverCounts(from.redis, 'wait', 'ASK');
      tryAgainAfter = await serverCounts(to.redis, 'evalsha', 'TRYAGAIN');
      await endMigration();
    } finally {
      await endMigration().catch(() => undefined);
    }
    const mid = await pending;
    const midOnTarget = mid.value ? await to.redis.get(lockKey(keyPrefix, key)) : null;
    if (mid.value) await mid.value.release();
    await cluster.waitHealthy();
    expect((await cluster.masterOf(slot)).port).toBe(target!.port);

    // After it: the second client still maps the slot to the source: MOVED.
    const movedBefore = await serverCounts(from.redis, 'wait', 'MOVED');
    const after = await settle(late.acquire(key, { ttl: 5_000, wait: 3_000 }), 15_000);
    const movedAfter = await serverCounts(from.redis, 'wait', 'MOVED');
    const afterOnTarget = after.value ? await to.redis.get(lockKey(keyPrefix, key)) : null;
    if (after.value) await after.value.release();

    const show = (result: typeof mid) =>
      result.value ? 'granted' : `${nameOf(result.error)}: ${(result.error as Error | undefined)?.message}`;
    console.log(
      `cluster migration of slot ${slot} ${source!.port} -> ${target!.port}: mid ${show(mid)} (${mid.ms} ms), ` +
        `after ${show(after)} (${after.ms} ms); source WAITs/ASKs ${JSON.stringify([askBefore, askAfter])}, ` +
        `target EVALSHAs/TRYAGAINs ${JSON.stringify([tryAgainBefore, tryAgainAfter])}, ` +
        `source WAITs/MOVEDs ${JSON.stringify([movedBefore, movedAfter])}`,
    );
    expect({
      mid: show(mid),
      midOnTarget: midOnTarget?.startsWith(`${mid.value?.token}:`) ?? false,
      after: show(after),
      afterOnTarget: afterOnTarget?.startsWith(`${after.value?.token}:`) ?? false,
    }).toEqual({ mid: 'granted', midOnTarget: true, after: 'granted', afterOnTarget: true });
    // Granted only after the migration ended (it could not be before), within the wait.
    expect(mid.ms).toBeGreaterThanOrEqual(500);
    // The faults really happened: mid-migration the acknowledged pipeline reached the source and was sent on
    // by ASK, and the target answered TRYAGAIN; after it, the source answered MOVED.
    expect({
      pipelineOnSourceMid: askAfter.command > askBefore.command,
      askAnswered: askAfter.error > askBefore.error,
      tryAgainAnswered: tryAgainAfter.error > tryAgainBefore.error,
      pipelineOnSourceAfter: movedAfter.command > movedBefore.command,
      movedAnswered: movedAfter.error > movedBefore.error,
    }).toEqual({ pipelineOnSourceMid: true, askAnswered: true, tryAgainAnswered: true, pipelineOnSourceAfter: true, movedAnswered: true });
    // Fencing tokens went on increasing across the move (the counter moved with the slot).
    expect(after.value!.fencingToken).toBeGreaterThan(mid.value!.fencingToken);
    expect(mid.value!.fencingToken).toBeGreaterThan(first.fencingToken);
  }, 45_000);

  it('(c) CLUSTER FAILOVER: the old master is a replica, the client map is stale (MOVED): acquisitions still granted within the wait', async () => {
    await cluster.waitHealthy();
    const keyPrefix = randomPrefix('cl-ack-failover');
    const lock = clusterLock(keyPrefix);
    const masters = await cluster.masters();
    const oldMaster = masters[masters.length - 1]!;
    const promoted = await replicaOf(oldMaster);
    const key = (await keysOn([oldMaster], 'failover', 1)).get(oldMaster.port)![0]!;
    const slot = clusterKeySlot(key);
    // Warm-up: the client learns that the slot is on the old master.
    const first = await lock.acquire(key, { ttl: 5_000, wait: 3_000 });
    expect(await first.release()).toBe(true);

    // A manual failover (no data lost): the replica takes the slots over, the old master becomes its replica.
    await admin(promoted.url).call('CLUSTER', 'FAILOVER');
    await waitFor('the replica to take the slot over', async () => (await cluster.masterOf(slot)).port === promoted.port, 15_000, 100);
    await cluster.waitHealthy(20_000);
    const onOld = admin(oldMaster.url);
    const before = await serverCounts(onOld, 'wait', 'MOVED');

    const results: string[] = [];
    const tokens: number[] = [first.fencingToken];
    let onPromoted: string | null = null;
    let onOldReplica: string | null = null;
    for (let i = 0; i < 3; i++) {
      const result = await settle(lock.acquire(key, { ttl: 5_000, wait: 3_000 }), 15_000);
      results.push(result.value ? 'granted' : `${nameOf(result.error)}: ${(result.error as Error | undefined)?.message}`);
      if (!result.value) continue;
      tokens.push(result.value.fencingToken);
      if (i === 0) {
        onPromoted = await admin(promoted.url).get(lockKey(keyPrefix, key));
        // Acknowledged: the old master, now the replica, has it too.
        onOldReplica = await (await replicaReader(oldMaster)).get(lockKey(keyPrefix, key));
        onPromoted = onPromoted?.startsWith(`${result.value.token}:`) ? 'ours' : onPromoted;
        onOldReplica = onOldReplica?.startsWith(`${result.value.token}:`) ? 'ours' : onOldReplica;
      }
      await result.value.release();
    }
    const after = await serverCounts(onOld, 'wait', 'MOVED');
    console.log(
      `cluster failover ${oldMaster.port} -> ${promoted.port} (slot ${slot}): ${results.join('; ')}; tokens ${tokens.join(', ')}; ` +
        `old master WAITs/MOVEDs ${JSON.stringify([before, after])}`,
    );
    expect({ results, onPromoted, onOldReplica }).toEqual({
      results: ['granted', 'granted', 'granted'],
      onPromoted: 'ours',
      onOldReplica: 'ours',
    });
    // The fault really happened: the first acknowledged pipeline went to the old master (its WAIT ran
    // there, a replica now) and was answered MOVED.
    expect({ pipelineOnOldMaster: after.command > before.command, movedAnswered: after.error > before.error }).toEqual({
      pipelineOnOldMaster: true,
      movedAnswered: true,
    });
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]!);
  }, 45_000);
});
