import type { Cluster, Redis } from 'ioredis';
import { LockReplicaError, LockStoreError } from '../../errors.js';
import { queueMember } from '../../token.js';
import type { AcquireRequest, AcquireResult, InspectResult, LockStore, ReleaseOutcome, StoreHealth, StoreListener } from '../store.js';
import { answerWithin, errorText } from '../health.js';
import { KeyLayout, slotOf, slotTag } from './key-layout.js';
import { AckConnections } from './ack-connections.js';
import { checkRedisAccess } from './redis-access.js';
import { RedisNode } from './redis-node.js';
import { SCRIPTS, SHARDED_SCRIPTS, type Scripts } from './scripts.js';
import { Subscriber } from './subscriber.js';

/** Settings of a {@link RedisLockStore}. */
export interface RedisLockStoreOptions {
  /** The connection for commands: one server (directly or through Sentinel) or an ioredis `Cluster`. */
  readonly client: Redis | Cluster;
  /** Close `client` on `close()` (true when the library created it). */
  readonly ownsClient?: boolean;
  /** Prefix of every key and channel the store uses; must not contain `{` or `}` (they would break the hash tags). */
  readonly keyPrefix: string;
  /** How long a channel stays subscribed after its last waiter left, so a hot key does not resubscribe per wait. Default 5000. */
  readonly lingerMs?: number;
  /** How long a connection check (PING) may take before the connection is replaced. Default 1000. */
  readonly probeMs?: number;
  /**
   * The last error the command connection reported (redacted), for messages. The store adds no
   * 'error' listener of its own to `client` (one would silence ioredis' log of a client you pass).
   */
  readonly lastError?: () => unknown;
  /** Called when the store closes: removes the listeners behind `lastError` from the client. */
  readonly detach?: () => void;
  /**
   * A lock counts only once this many replicas acknowledged it (`WAIT replicas timeout`); otherwise
   * it is given back and the attempt fails with {@link LockReplicaError} (retried within the wait).
   */
  readonly replicaAck?: {
    /** Replicas that must acknowledge each lock. */
    readonly replicas: number;
    /** How long WAIT waits for them, ms. */
    readonly timeout: number;
  };
  /**
   * Publish "released" on every release, also when nobody queued: for the nodes of a quorum, whose
   * waiters never queue (they are told by the release instead). Default false. @internal
   */
  readonly announceReleases?: boolean;
}

/**
 * 1 if the server has SPUBLISH (Redis 7: redis.acl_check_cmd raises on an unknown command), else 0.
 * Runs nothing.
 */
const HAS_SHARDED_PUBSUB = `
if not redis.acl_check_cmd then return 0 end
if pcall(redis.acl_check_cmd, 'SPUBLISH', 'c', 'm') then return 1 end
return 0
`;

type Reply = [number, string | number, (string | number)?, (number | null)?];

/** The hash slots of a Redis Cluster: all of them served means every key can be locked. */
const CLUSTER_SLOTS = 16384;

/** How many HANDOFF calls one release may make to drop dead queue entries (each drops up to ~200, in well under 1 ms). */
const MAX_HANDOFF_ROUNDS = 250;

/** The result of an acquire script's reply, for a slot group of `count` keys. */
function acquireResult(reply: Reply, count: number): AcquireResult {
  if (Number(reply[0]) === 1) {
    const fence = Number(reply[1]);
    const fences = count === 1 ? [fence] : new Array<number>(count).fill(fence);
    return reply[2] === undefined || reply[2] === null
      ? { acquired: true, fences }
      : { acquired: true, fences, remaining: Number(reply[2]) };
  }
  const pttl = Number(reply[1]);
  const fence = reply[2] === undefined || reply[2] === null || Number(reply[2]) < 0 ? undefined : Number(reply[2]);
  const rank = reply[3] === undefined || reply[3] === null ? undefined : Number(reply[3]);
  return { acquired: false, pttl, fence, rank };
}

/** Keys of one hash slot, with their places in the request. */
interface SlotGroup {
  readonly keys: string[];
  readonly at: number[];
}

/**
 * The store on one Redis server (or a primary with replicas through Sentinel), or on a Redis Cluster:
 * every operation is one Lua script on one slot, so it is one round trip and atomic. On a Cluster, a
 * multi-key lock whose keys live in different slots is taken slot by slot in ascending slot order, one
 * attempt each, and rolled back at the first busy slot (no hold-and-wait, hence no deadlock).
 * Waiters are notified on one subscriber per store, opened on the first wait.
 */
export class RedisLockStore implements LockStore {
  /** @internal */
  readonly layout: KeyLayout;
  /** @internal */
  readonly node: RedisNode;
  private scripts: Scripts;
  /** Whether the servers' support of SPUBLISH is known (or irrelevant); until then every operation asks first. */
  private shardingKnown: boolean;
  private askingSharding?: Promise<void>;
  private readonly subscriber: Subscriber;
  private readonly cluster: boolean;
  /** The one slot of every name, when the Cluster client's own keyPrefix has a hash tag. */
  private readonly fixedSlot?: number;
  private readonly replicaAck?: { readonly replicas: number; readonly timeout: number };
  /**
   * The connections that run acquisitions under replicaAck: WAIT counts the writes of its own
   * connection, and blocks it while it waits (so heartbeats and releases go on the other one).
   */
  private ackConnections?: AckConnections;
  private readonly probeMs: number;
  private readonly detach?: () => void;
  private closed = false;

  constructor(options: RedisLockStoreOptions) {
    this.layout = new KeyLayout(options.keyPrefix);
    // The slot tags of the fencing counters, found once per process (about 10 ms): at boot, not on
    // the first lock (which took 120 ms before the CRC skipped the UTF-8 encoding of ASCII text).
    slotTag(0);
    this.probeMs = options.probeMs ?? 1000;
    this.node = new RedisNode(options.client, {
      owns: options.ownsClient ?? false,
      probeMs: options.probeMs ?? 1000,
      lastError: options.lastError,
    });
    this.cluster = this.node.isCluster;
    // A Cluster client's keyPrefix with a hash tag ("{app}:", checked at boot) puts every name in that tag's slot.
    const tag = this.cluster ? /\{([^{}]+)\}/.exec((options.client as Cluster).options?.keyPrefix ?? '') : null;
    this.fixedSlot = tag ? slotOf(tag[1]!) : undefined;
    // Sharded pub/sub when the ioredis Cluster client supports it (it has the option at all).
    // Sharded pub/sub when the ioredis Cluster client supports it (it has the option at all) and, asked
    // before the first operation, the servers too (Redis 7; a 6.2 Cluster publishes plainly).
    const sharded = this.cluster && 'shardedSubscribers' in ((options.client as Cluster).options ?? {});
    this.scripts = sharded ? SHARDED_SCRIPTS : SCRIPTS;
    this.shardingKnown = !sharded;
    this.subscriber = new Subscriber({ client: options.client, layout: this.layout, sharded, lingerMs: options.lingerMs ?? 5000 });
    this.node.companions.add({ disconnect: (reconnect) => this.subscriber.current?.disconnect(reconnect) });
    this.replicaAck = options.replicaAck;
    this.detach = options.detach;
    // Under replicaAck every lock is taken by an acquire followed by WAIT: no hand-off by a release
    // (that would grant a lock no replica has acknowledged). Waiters are told of releases instead.
    this.announce = options.announceReleases || options.replicaAck ? 1 : 0;
  }
  private readonly announce: 0 | 1;

  acquire(given: AcquireRequest): Promise<AcquireResult> {
    return this.acquireAbove(given, 0);
  }

  /**
   * Quorum mode: an acquisition whose fencing token is at least `proposed` (the node's own next token
   * if higher). Nodes that agree on it need no write-back. @internal
   */
  acquireAbove(given: AcquireRequest, proposed: number): Promise<AcquireResult> {
    const request: AcquireRequest = this.replicaAck ? { keys: given.keys, token: given.token, ttl: given.ttl } : given;
    // One slot (every lock on one server): one script, no slot groups to build.
    if (this.oneSlot(request.keys)) return this.acquireGroup(request, request.keys, proposed);
    return this.acquireSlots(request, this.groups(request.keys), proposed);
  }

  /** Keys in several slots: one slot after the other, in slot order; back off at the first busy one. */
  private async acquireSlots(request: AcquireRequest, groups: readonly SlotGroup[], proposed: number): Promise<AcquireResult> {
    const fences = new Array<number>(request.keys.length);
    let remaining: number | undefined;
    for (let g = 0; g < groups.length; g++) {
      const group = groups[g]!;
      let result: AcquireResult;
      try {
        result = await this.acquireGroup(request, group.keys, proposed);
      } catch (error) {
        await this.leaveGroups(request, groups.slice(0, g + 1)).catch(() => undefined);
        throw error;
      }
      if (!result.acquired) {
        if (g > 0) await this.leaveGroups(request, groups.slice(0, g));
        return result;
      }
      group.at.forEach((at, i) => (fences[at] = result.fences[i]!));
      if (result.remaining !== undefined) remaining = Math.min(remaining ?? Infinity, result.remaining);
    }
    return remaining === undefined ? { acquired: true, fences } : { acquired: true, fences, remaining };
  }

  async release(keys: readonly string[], token: string): Promise<ReleaseOutcome> {
    const epoch = this.node.closes;
    const groups = this.groups(keys);
    const replies = await Promise.all(groups.map((group) => this.run('release', this.triples(group.keys), [token, this.announce])));
    let all = 1;
    let absent = 0;
    for (const reply of replies.map(Number)) {
      all &= reply & 1;
      absent |= reply & 4;
    }
    await Promise.all(groups.filter((_, g) => Number(replies[g]) & 2).map((group) => this.finishHandoffs(group.keys)));
    if (all === 1 && absent === 0) return 'released';
    // Gone or taken. Without a reconnect meanwhile this is the only run of the command: not ours.
    return this.node.closes === epoch ? 'not-ours' : 'unsure';
  }

  async extend(keys: readonly string[], token: string, ttl: number): Promise<boolean> {
    const replies = await Promise.all(
      this.groups(keys).map((group) =>
        this.run(
          'extend',
          group.keys.map((k) => this.layout.lock(k)),
          [token, ttl],
        ),
      ),
    );
    return replies.every((reply) => Number(reply) === 1);
  }

  async inspect(key: string, token: string): Promise<InspectResult> {
    const reply = (await this.run('inspect', [this.layout.lock(key)], [token])) as Reply;
    if (Number(reply[0]) !== 1) return { held: false };
    return { held: true, fence: Number(reply[1]), pttl: Number(reply[2]) };
  }

  async isLocked(key: string): Promise<boolean> {
    return Number(await this.run('isLocked', [this.layout.lock(key)], [])) === 1;
  }

  async forceRelease(key: string): Promise<boolean> {
    const lock = this.layout.lock(key);
    const holder = await this.run('holder', [lock], []);
    if (typeof holder !== 'string') return false;
    const reply = Number(await this.run('forceRelease', this.triples([key]), [holder, this.announce]));
    if (reply & 2) await this.finishHandoffs([key]);
    return (reply & 1) === 1;
  }

  async leave(request: AcquireRequest): Promise<boolean> {
    const replies = await this.leaveGroups(request, this.groups(request.keys));
    return replies.some(Boolean);
  }

  /**
   * Quorum mode: raises the slot counters of `keys` to `fence` and puts it into the lock values
   * `token` holds. True if the token holds every key. @internal
   */
  async raiseFence(keys: readonly string[], token: string, fence: number): Promise<boolean> {
    const replies = await Promise.all(
      this.groups(keys).map((group) =>
        this.run('raise', [...group.keys.map((k) => this.layout.lock(k)), ...group.keys.map((k) => this.layout.fence(k))], [token, fence]),
      ),
    );
    return replies.every((reply) => Number(reply) === 1);
  }

  async putRecord(key: string, token: string, value: string, ttl: number): Promise<boolean> {
    return Number(await this.run('putRecord', [this.layout.lock(key), this.layout.record(key)], [token, value, ttl])) === 1;
  }

  async getRecord(key: string): Promise<string | undefined> {
    const reply = await this.run('getRecord', [this.layout.record(key)], []);
    return typeof reply === 'string' ? reply : reply instanceof Buffer ? reply.toString('utf8') : undefined;
  }

  watch(keys: readonly string[], token: string, listener: StoreListener): Promise<() => void> {
    if (this.closed) return Promise.reject(new Error('the lock store is closed'));
    if (!this.shardingKnown) return this.knowSharding().then(() => this.subscriber.watch(keys, token, listener));
    return this.subscriber.watch(keys, token, listener);
  }

  listening(keys: readonly string[]): boolean {
    return this.subscriber.listening(keys);
  }

  suspect(): void {
    this.node.suspect();
    this.ackConnections?.suspect(this.probeMs);
  }

  /** Checks that the Redis user may run every script, key and channel command the store needs. */
  async check(timeoutMs: number): Promise<void> {
    // A refusal or silence is named by the access check itself, below.
    await this.knowSharding().catch(() => undefined);
    return checkRedisAccess(this.node.client as Redis, this.layout.prefix, {
      timeoutMs,
      lastError: () => this.lastError(),
      scripts: this.scripts,
      sharded: this.scripts === SHARDED_SCRIPTS,
    });
  }

  lastError(): unknown {
    return this.node.lastError() ?? this.subscriber.lastError();
  }

  /**
   * One server (or Sentinel's primary): a PING round trip. A Cluster: CLUSTER INFO of the node the client
   * asks, up when `cluster_state:ok` and all 16384 slots are served (`cluster_slots_ok`). Bounded by
   * `timeoutMs`; a connection that did not answer in time is checked (and replaced if it stays silent).
   */
  async health(timeoutMs: number): Promise<StoreHealth> {
    const client = this.node.client;
    const mode = this.cluster ? 'cluster' : (client.options as { sentinels?: unknown } | undefined)?.sentinels ? 'sentinel' : 'single';
    const base = { store: 'redis', mode };
    if (this.closed) return { up: false, details: { ...base, error: 'the lock store is closed' } };
    // A database the server refused on connect: no lock is taken there (see RedisNode.run).
    const refusal = this.node.lastError();
    if (refusal instanceof LockStoreError) return { up: false, details: { ...base, error: errorText(refusal) } };
    const asked = this.cluster ? (client as Cluster).cluster('INFO') : (client as Redis).ping();
    const answer = await answerWithin<unknown>(asked, timeoutMs, () => this.lastError());
    if (!answer.ok) {
      this.suspect();
      return { up: false, details: { ...base, roundTripMs: answer.ms, error: answer.error } };
    }
    if (!this.cluster) return { up: true, details: { ...base, roundTripMs: answer.ms } };
    const info = new Map(
      String(answer.value)
        .split(/\r?\n/)
        .map((line) => line.split(':', 2) as [string, string?])
        .filter((pair): pair is [string, string] => pair[1] !== undefined)
        .map(([name, value]) => [name.trim(), value.trim()]),
    );
    const state = info.get('cluster_state');
    const slotsOk = Number(info.get('cluster_slots_ok'));
    return {
      up: state === 'ok' && slotsOk === CLUSTER_SLOTS,
      details: {
        ...base,
        roundTripMs: answer.ms,
        state,
        slotsOk,
        slotsPfail: Number(info.get('cluster_slots_pfail')),
        slotsFail: Number(info.get('cluster_slots_fail')),
        knownNodes: Number(info.get('cluster_known_nodes')),
        size: Number(info.get('cluster_size')),
      },
    };
  }

  async close(timeoutMs?: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscriber.close();
    this.ackConnections?.close();
    try {
      await this.node.close(timeoutMs);
    } finally {
      this.detach?.();
    }
  }

  /** One slot's keys: a single-key or a multi-key script. */
  private acquireGroup(request: AcquireRequest, keys: readonly string[], proposed: number): Promise<AcquireResult> {
    const { token, ttl, queueFor } = request;
    const queued = queueFor !== undefined;
    let name: 'acquireMany' | 'acquireQueued' | 'acquirePlain';
    let names: string[];
    let args: (string | number)[];
    // A slot's share of a multi-key lock (even a single key) queues as a multi-key watcher: a release
    // then wakes it to compete, and never hands it that one key as if it were the whole lock.
    if (keys.length > 1 || request.keys.length > 1) {
      name = 'acquireMany';
      names = this.triples(keys);
      const member = queued ? queueMember(token, ttl, queueFor, true) : '';
      args = [token, ttl, queued ? 1 : 0, member, queueFor ?? 0, ...(proposed > 0 ? [proposed] : [])];
    } else {
      const key = keys[0]!;
      names = [this.layout.lock(key), this.layout.queue(key), this.layout.fence(key)];
      if (queued) {
        name = 'acquireQueued';
        args = [token, ttl, queueMember(token, ttl, queueFor, false), queueFor];
      } else {
        name = 'acquirePlain';
        args = proposed > 0 ? [token, ttl, proposed] : [token, ttl];
      }
    }
    const pending = this.replicaAck ? this.runAcknowledged(request, keys[0]!, name, names, args) : this.run(name, names, args);
    return pending.then((raw) => acquireResult(raw as Reply, keys.length));
  }

  /**
   * An acquire script under replicaAck (on the slot of the group's `first` key), followed by WAIT on
   * the same connection, in one round trip.
   * Too few replicas in time: the lock is given back and the attempt fails with LockReplicaError (the
   * engine retries within the wait).
   */
  private async runAcknowledged(
    request: AcquireRequest,
    first: string,
    name: keyof Scripts,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    await this.knowSharding();
    const { replicas, timeout } = this.replicaAck!;
    if (this.closed) throw new Error('the lock store is closed');
    this.ackConnections ??= new AckConnections(this.node.client, () => this.node.lastError());
    // Every key of one call shares a slot: the first one's.
    const slot = this.cluster ? (this.fixedSlot ?? slotOf(first)) : 0;
    const { reply, acknowledged } = await this.ackConnections.run(this.scripts[name], slot, keys, args, replicas, timeout);
    if (Number((reply as Reply)[0]) !== 1 || acknowledged >= replicas) return reply;
    await this.leave(request).catch(() => undefined);
    throw new LockReplicaError(request.keys, replicas, acknowledged, timeout);
  }

  private leaveGroups(request: AcquireRequest, groups: readonly SlotGroup[]): Promise<boolean[]> {
    const { token, ttl, queueFor } = request;
    const multi = request.keys.length > 1;
    const member = queueMember(token, ttl, queueFor ?? 0, multi);
    return Promise.all(
      groups.map(async (group) => {
        const reply = Number(await this.run('leave', this.triples(group.keys), [token, member, this.announce]));
        if (reply & 2) await this.finishHandoffs(group.keys);
        return (reply & 1) === 1;
      }),
    );
  }

  /** Drops dead queue entries left by a hand-off that had too many to drop in one script. Bounded. */
  private async finishHandoffs(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      const three = [this.layout.lock(key), this.layout.queue(key), this.layout.fence(key)];
      for (let round = 0; round < MAX_HANDOFF_ROUNDS; round++) {
        if (Number(await this.run('handoff', three, [])) !== 3) break;
      }
    }
  }

  /**
   * The request's keys by slot, in ascending slot order (the order every process takes them in). One
   * group on a single server, where one script may touch any key.
   */
  private groups(keys: readonly string[]): SlotGroup[] {
    if (this.oneSlot(keys)) return [{ keys: [...keys], at: keys.map((_, i) => i) }];
    const bySlot = new Map<number, SlotGroup>();
    keys.forEach((key, i) => {
      const slot = slotOf(key);
      let group = bySlot.get(slot);
      if (!group) bySlot.set(slot, (group = { keys: [], at: [] }));
      group.keys.push(key);
      group.at.push(i);
    });
    return [...bySlot.entries()].sort((a, b) => a[0] - b[0]).map(([, group]) => group);
  }

  /** True when every key of a request is in one slot without computing any: one server, one key, or a tagged keyPrefix. */
  private oneSlot(keys: readonly string[]): boolean {
    return !this.cluster || keys.length === 1 || this.fixedSlot !== undefined;
  }

  /** KEYS of the multi-key scripts: every lock key, then every queue key, then every slot counter. */
  private triples(keys: readonly string[]): string[] {
    const n = keys.length;
    const out = new Array<string>(3 * n);
    for (let i = 0; i < n; i++) {
      const key = keys[i]!;
      out[i] = this.layout.lock(key);
      out[n + i] = this.layout.queue(key);
      out[2 * n + i] = this.layout.fence(key);
    }
    return out;
  }

  private run(name: keyof Scripts, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    if (!this.shardingKnown) return this.knowSharding().then(() => this.node.run(this.scripts[name], keys, args));
    return this.node.run(this.scripts[name], keys, args);
  }

  /**
   * On a Cluster, asks one server (once; again after a failure) whether it has SPUBLISH; if not (Redis
   * 6.2), the scripts publish and the waiters subscribe without sharding. All servers of a Cluster are
   * taken to agree (during a rolling upgrade from 6.2, upgrade every node before the first lock).
   */
  private knowSharding(): Promise<void> {
    if (this.shardingKnown) return Promise.resolve();
    this.askingSharding ??= Promise.resolve((this.node.client as Cluster).eval(HAS_SHARDED_PUBSUB, 0))
      .then((reply) => {
        if (this.shardingKnown) return;
        if (Number(reply) !== 1) {
          this.scripts = SCRIPTS;
          this.subscriber.unshard();
        }
        this.shardingKnown = true;
      })
      .finally(() => {
        this.askingSharding = undefined;
      });
    return this.askingSharding;
  }
}
