/**
 * Redis Cluster and Redis Sentinel topologies for tests, made of private servers from {@link startRedis}:
 * every process listens on 127.0.0.1 on a free port, has a data directory of its own (a cluster node keeps
 * its `nodes.conf` there, a sentinel its rewritable `redis.conf`), and is stopped by pid. So {@link stopAll},
 * the watchdog and the exit hook of `redis-server.ts` cover these servers too.
 *
 * Admin commands go over short raw RESP connections, each bounded in time; every wait polls every 100 ms
 * and is bounded in time and in attempts. Servers with a password (`--requirepass` in `args`) are not supported.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

import { freePort, pingRedis, startRedis, type RedisServerHandle } from './redis-server.js';

const HOST = '127.0.0.1';
const SLOTS = 16384;
const POLL_MS = 100;
const COMMAND_TIMEOUT_MS = 1_000;
const PING_TIMEOUT_MS = 300;
const CLI_TIMEOUT_MS = 30_000;
const DEFAULT_WAIT_MS = 15_000;
const BUS_PORT_ATTEMPTS = 3;

/**
 * For every data node: a replica syncs at once (Redis 7 waits 5 s by default for more replicas to share a
 * diskless sync) and over the socket, so no replica ever writes an RDB file.
 */
const REPLICATION_ARGS = ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0', '--repl-diskless-load', 'swapdb'];

/** A `host:port` address, as ioredis takes for cluster seeds and sentinels. */
export interface RedisAddress {
  /** Always `127.0.0.1`. */
  readonly host: string;
  /** The port. */
  readonly port: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Redis Cluster
// ---------------------------------------------------------------------------------------------------------------

/** Options for {@link startCluster}. */
export interface StartClusterOptions {
  /** Master nodes, each serving a third (with 3) of the 16384 slots. At least 3 (`redis-cli --cluster create` wants 3). Default 3. */
  masters?: number;
  /** Replicas of each master. Default 1 (so 3 masters make 6 nodes). */
  replicasPerMaster?: number;
  /**
   * `cluster-node-timeout` in ms: a master unreachable this long is suspected, then failed over. Default 1000,
   * so that a failover takes a couple of seconds (Redis' own default is 15 s).
   */
  nodeTimeout?: number;
  /** Extra `redis-server` arguments for every node; they come last, so they win. No `--requirepass`. */
  args?: string[];
  /** Bound for the cluster to be formed: every node ok, agreeing on all slots, replicas in sync. Default 15 s. */
  timeoutMs?: number;
}

/** A running Redis Cluster; see {@link startCluster}. */
export interface ClusterHandle {
  /** Every node, masters and replicas, in start order (which role each got is for the cluster to say: {@link ClusterHandle.masters}). */
  readonly nodes: readonly RedisServerHandle[];
  /** `{ host, port }` of every node: the startup nodes for ioredis' `new Cluster(seeds)`. */
  readonly seeds: readonly RedisAddress[];
  /** `redis://127.0.0.1:<port>` of every node. */
  readonly urls: readonly string[];
  /** The nodes that are masters now, and not failed, in the view of the first node that answers `CLUSTER NODES`. */
  masters(): Promise<RedisServerHandle[]>;
  /** The nodes that are replicas now, and not failed, in the same view as {@link ClusterHandle.masters}. */
  replicas(): Promise<RedisServerHandle[]>;
  /**
   * The node that serves a slot, or a key's slot (see {@link clusterKeySlot}), in the view of the first node
   * that answers: right after a failover, call {@link ClusterHandle.waitHealthy} first.
   * @throws Error if no node answers, or the slot is served by no node of this cluster.
   */
  masterOf(slotOrKey: number | string): Promise<RedisServerHandle>;
  /**
   * Wait until every node that answers PING says `cluster_state:ok` with all 16384 slots served by live
   * masters; all of them agree on who serves which slot, on the roles of the live nodes, and on which nodes
   * are down (flagged failed); and every live replica's link to its master is up. Use it after a
   * `restart()` of a node: it rejoins at once, but takes a node timeout or so to learn who failed meanwhile.
   * @param timeoutMs - default 15 s.
   * @throws Error (with the last thing that was not right) on timeout.
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /**
   * SIGKILL a master (a crash), then wait until one of its replicas serves its slots in the view of every
   * other live node and the cluster is healthy again ({@link ClusterHandle.waitHealthy}). The killed node stays
   * down; `restart()` on it makes it rejoin (its `nodes.conf` survives), as a replica of its successor.
   * @param timeoutMs - default 15 s.
   * @returns the promoted node.
   * @throws Error if `master` is not a master serving slots with a live replica, or on timeout.
   */
  failover(master: RedisServerHandle, timeoutMs?: number): Promise<RedisServerHandle>;
  /** Stop every node (SIGTERM, then SIGKILL after 3 s) and remove their directories. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Start a Redis Cluster of `masters * (1 + replicasPerMaster)` private nodes and form it with
 * `redis-cli --cluster create` (`REDIS_CLI_BIN`, else `redis-cli` from PATH).
 *
 * Each node runs with `--cluster-enabled yes --cluster-config-file nodes.conf` (in its own directory),
 * `--cluster-node-timeout <nodeTimeout>`, its bus on a second free port (`--cluster-port`: the default,
 * port + 10000, does not exist above 55535), `--cluster-replica-validity-factor 0` (a replica may always take
 * over) and the diskless replication of every topology here.
 *
 * @returns once every node says `cluster_state:ok`, all nodes agree on the slots and the roles, and every
 * replica's link to its master is up.
 * @throws Error if a node does not start, `redis-cli` fails (with its output), or the cluster is not formed
 * within `timeoutMs`; the nodes started are stopped first.
 * @example
 * ```ts
 * const cluster = await startCluster();
 * const client = new Cluster([...cluster.seeds]);
 * await cluster.failover(await cluster.masterOf('key'));
 * afterAll(() => stopAllTopologies());
 * ```
 */
export async function startCluster(opts: StartClusterOptions = {}): Promise<ClusterHandle> {
  const masters = opts.masters ?? 3;
  const replicasPerMaster = opts.replicasPerMaster ?? 1;
  const nodeTimeout = opts.nodeTimeout ?? 1_000;
  if (!Number.isInteger(masters) || masters < 3) throw new Error(`startCluster: masters must be an integer >= 3, got ${masters}`);
  if (!Number.isInteger(replicasPerMaster) || replicasPerMaster < 0) {
    throw new Error(`startCluster: replicasPerMaster must be an integer >= 0, got ${replicasPerMaster}`);
  }
  const baseArgs = [
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    'nodes.conf',
    '--cluster-node-timeout',
    String(nodeTimeout),
    '--cluster-replica-validity-factor',
    '0',
    ...REPLICATION_ARGS,
  ];
  const count = masters * (1 + replicasPerMaster);
  const nodes = await startAll(Array.from({ length: count }, () => () => startClusterNode(baseArgs, opts.args ?? [])));
  const cluster = new RedisCluster(nodes, masters);
  try {
    const created = await runCli([
      '--cluster',
      'create',
      ...nodes.map((node) => `${node.host}:${node.port}`),
      '--cluster-replicas',
      String(replicasPerMaster),
      '--cluster-yes',
    ]);
    if (created.code !== 0) {
      throw new Error(`redis-cli --cluster create failed (${created.code ?? created.signal}):\n${created.output}`);
    }
    await cluster.waitFormed(opts.timeoutMs ?? DEFAULT_WAIT_MS);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  topologies.add(cluster);
  return cluster;
}

/**
 * The cluster slot of a key: CRC16 (XMODEM) of the key's UTF-8 bytes, or of its hash tag (the part between
 * the first `{` and the next `}`, if not empty), modulo 16384, as `CLUSTER KEYSLOT` computes it.
 */
export function clusterKeySlot(key: string | Buffer): number {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % SLOTS;
  }
  return crc16(bytes) % SLOTS;
}

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** A cluster node, its bus on a free port of its own; a few bus ports are tried, as a free port may be taken meanwhile. */
async function startClusterNode(baseArgs: string[], extraArgs: string[]): Promise<RedisServerHandle> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= BUS_PORT_ATTEMPTS; attempt++) {
    try {
      const busPort = await freePort();
      return await startRedis({ persist: true, args: [...baseArgs, '--cluster-port', String(busPort), ...extraArgs] });
    } catch (error) {
      lastError = error;
      if ((error as NodeJS.ErrnoException).code !== undefined) break; // no redis-server: another port will not help
    }
  }
  throw lastError;
}

/** One line of `CLUSTER NODES`. */
interface ClusterNodeEntry {
  readonly id: string;
  readonly port: number;
  readonly flags: readonly string[];
  /** The master's id for a replica, else `-`. */
  readonly masterId: string;
  /** Inclusive slot ranges served. */
  readonly slots: readonly (readonly [number, number])[];
}

function parseClusterNodes(text: string): ClusterNodeEntry[] {
  const entries: ClusterNodeEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    if (fields.length < 8) continue;
    const port = /:(\d+)@/.exec(fields[1]!)?.[1];
    if (port === undefined) continue; // noaddr
    const slots: [number, number][] = [];
    for (const range of fields.slice(8)) {
      if (range.startsWith('[')) continue; // a slot being imported or migrated
      const [start, end = start] = range.split('-').map(Number);
      if (start !== undefined && end !== undefined) slots.push([start, end]);
    }
    entries.push({ id: fields[0]!, port: Number(port), flags: fields[2]!.split(','), masterId: fields[3]!, slots });
  }
  return entries;
}

function isFailed(entry: ClusterNodeEntry): boolean {
  return entry.flags.includes('fail') || entry.flags.includes('fail?');
}

/** `slot range -> port` of every node that serves slots, as one comparable string. */
function slotMap(entries: readonly ClusterNodeEntry[]): string {
  return entries
    .flatMap((entry) => entry.slots.map(([start, end]) => ({ start, text: `${start}-${end}@${entry.port}` })))
    .sort((a, b) => a.start - b.start)
    .map((range) => range.text)
    .join(' ');
}

/** `port:master` or `port:replica-of-<master port>` of every given node, as one comparable string. */
function roleMap(entries: readonly ClusterNodeEntry[]): string {
  const byId = new Map(entries.map((entry) => [entry.id, entry.port]));
  return entries
    .map((entry) => `${entry.port}:${entry.flags.includes('master') ? 'master' : `replica-of-${byId.get(entry.masterId) ?? '?'}`}`)
    .sort()
    .join(' ');
}

function servedSlots(entries: readonly ClusterNodeEntry[]): number {
  return entries.reduce((sum, entry) => sum + entry.slots.reduce((n, [start, end]) => n + end - start + 1, 0), 0);
}

function ownerOf(entries: readonly ClusterNodeEntry[], slot: number): ClusterNodeEntry | undefined {
  return entries.find((entry) => entry.slots.some(([start, end]) => slot >= start && slot <= end));
}

/** What one node says: `CLUSTER INFO` fields and `CLUSTER NODES`. */
interface NodeView {
  readonly node: RedisServerHandle;
  readonly info: Record<string, string>;
  readonly entries: ClusterNodeEntry[];
}

class RedisCluster implements ClusterHandle {
  readonly seeds: readonly RedisAddress[];
  readonly urls: readonly string[];
  private stopping?: Promise<void>;

  constructor(
    readonly nodes: readonly RedisServerHandle[],
    private readonly masterCount: number,
  ) {
    this.seeds = nodes.map((node) => ({ host: node.host, port: node.port }));
    this.urls = nodes.map((node) => node.url);
  }

  async masters(): Promise<RedisServerHandle[]> {
    const entries = await this.anyView();
    return this.handles(entries.filter((entry) => entry.flags.includes('master') && !isFailed(entry)));
  }

  async replicas(): Promise<RedisServerHandle[]> {
    const entries = await this.anyView();
    return this.handles(entries.filter((entry) => entry.flags.includes('slave') && !isFailed(entry)));
  }

  async masterOf(slotOrKey: number | string): Promise<RedisServerHandle> {
    const slot = typeof slotOrKey === 'number' ? slotOrKey : clusterKeySlot(slotOrKey);
    if (!Number.isInteger(slot) || slot < 0 || slot >= SLOTS) throw new Error(`masterOf: ${slot} is not a slot (0..16383)`);
    const owner = ownerOf(await this.anyView(), slot);
    const handle = owner && this.handle(owner.port);
    if (!handle) throw new Error(`masterOf: slot ${slot} is served by no node of this cluster`);
    return handle;
  }

  async waitHealthy(timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    await waitUntil('a healthy cluster', timeoutMs, async () => {
      const views = await this.liveViews();
      return typeof views === 'string' ? views : await this.healthy(views);
    });
  }

  async failover(master: RedisServerHandle, timeoutMs = DEFAULT_WAIT_MS): Promise<RedisServerHandle> {
    const entries = await this.anyView(master.port);
    const entry = entries.find((candidate) => candidate.port === master.port);
    if (!entry?.flags.includes('master') || entry.slots.length === 0) {
      throw new Error(
        `failover: ${master.host}:${master.port} is not a master serving slots (${entry?.flags.join(',') ?? 'unknown node'})`,
      );
    }
    if (!entries.some((candidate) => candidate.masterId === entry.id && !isFailed(candidate))) {
      throw new Error(`failover: ${master.host}:${master.port} has no live replica to take over`);
    }
    const slot = entry.slots[0]![0];
    await master.kill();
    return waitUntil(`a replica of ${master.port} to take over slot ${slot}`, timeoutMs, async () => {
      const views = await this.liveViews();
      if (typeof views === 'string') return views;
      const unhealthy = await this.healthy(views);
      if (typeof unhealthy === 'string') return unhealthy;
      const owner = ownerOf(views[0]!.entries, slot);
      if (!owner || owner.port === master.port) return `slot ${slot} still served by ${master.port}`;
      return { value: this.handle(owner.port)! };
    });
  }

  stop(): Promise<void> {
    topologies.delete(this);
    this.stopping ??= Promise.all(this.nodes.map((node) => node.stop())).then(() => undefined);
    return this.stopping;
  }

  /** First formation: every node up and known to all, as many masters as asked, and healthy. */
  async waitFormed(timeoutMs: number): Promise<void> {
    await waitUntil('the cluster to form', timeoutMs, async () => {
      const views = await this.liveViews();
      if (typeof views === 'string') return views;
      if (views.length < this.nodes.length) return `only ${views.length} of ${this.nodes.length} nodes answer`;
      for (const { node, info } of views) {
        if (Number(info.cluster_known_nodes) !== this.nodes.length) return `${node.port} knows ${info.cluster_known_nodes} nodes`;
        if (Number(info.cluster_size) !== this.masterCount) return `${node.port} sees ${info.cluster_size} masters`;
      }
      return this.healthy(views);
    });
  }

  /**
   * Healthy: every view (of a live node) says ok with all slots served; all agree on the slot map and on the
   * roles of the live nodes; every slot is on a live node; each view flags exactly the dead nodes as failed
   * (`fail` or `fail?`); every live replica's link to its master is up.
   */
  private async healthy(views: readonly NodeView[]): Promise<string | { value: undefined }> {
    const live = new Set(views.map(({ node }) => node.port));
    const first = views[0]!;
    const slots = slotMap(first.entries);
    const roles = roleMap(first.entries.filter((entry) => live.has(entry.port)));
    for (const { node, info, entries } of views) {
      if (info.cluster_state !== 'ok') return `${node.port} says cluster_state:${info.cluster_state}`;
      if (Number(info.cluster_slots_ok) !== SLOTS) return `${node.port} says cluster_slots_ok:${info.cluster_slots_ok}`;
      if (servedSlots(entries) !== SLOTS) return `${node.port} sees ${servedSlots(entries)} slots served`;
      if (slotMap(entries) !== slots) return `${node.port} and ${first.node.port} disagree on slots`;
      if (roleMap(entries.filter((entry) => live.has(entry.port))) !== roles)
        return `${node.port} and ${first.node.port} disagree on roles`;
      const known = new Set(entries.map((entry) => entry.port));
      const unknown = [...live].filter((port) => !known.has(port));
      if (unknown.length > 0) return `${node.port} does not know ${unknown.join(', ')}`;
      const wrong = entries.find((entry) => isFailed(entry) === live.has(entry.port));
      if (wrong) return `${node.port} sees ${wrong.port} as ${wrong.flags.join(',')} while it is ${live.has(wrong.port) ? 'up' : 'down'}`;
    }
    const dead = first.entries.filter((entry) => entry.slots.length > 0 && !live.has(entry.port));
    if (dead.length > 0) return `slots still on dead node(s) ${dead.map((entry) => entry.port).join(', ')}`;
    const replicas = views.filter(({ node, entries }) => entries.find((entry) => entry.port === node.port)?.flags.includes('slave'));
    const links = await Promise.all(replicas.map(({ node }) => replicationInfo(node.port)));
    const down = replicas.filter((_, i) => links[i]!.master_link_status !== 'up');
    if (down.length > 0) return `replica link not up yet on ${down.map(({ node }) => node.port).join(', ')}`;
    return { value: undefined };
  }

  /** The views of the nodes that answer PING; a string saying why not if one of those fails to answer. */
  private async liveViews(): Promise<NodeView[] | string> {
    const live = await liveNodes(this.nodes);
    if (live.length === 0) return 'no node answers PING';
    const views = await Promise.all(
      live.map(async (node): Promise<NodeView | string> => {
        try {
          const [info, nodes] = await Promise.all([command(node.port, ['CLUSTER', 'INFO']), command(node.port, ['CLUSTER', 'NODES'])]);
          return { node, info: parseInfo(String(info)), entries: parseClusterNodes(String(nodes)) };
        } catch (error) {
          return `${node.port}: ${(error as Error).message}`;
        }
      }),
    );
    const failed = views.find((view) => typeof view === 'string');
    return failed ?? (views as NodeView[]);
  }

  /** `CLUSTER NODES` from the first node that answers (other than `except`). */
  private async anyView(except?: number): Promise<ClusterNodeEntry[]> {
    const errors: string[] = [];
    for (const node of this.nodes) {
      if (node.port === except) continue;
      try {
        return parseClusterNodes(String(await command(node.port, ['CLUSTER', 'NODES'])));
      } catch (error) {
        errors.push(`${node.port}: ${(error as Error).message}`);
      }
    }
    throw new Error(`No cluster node answered CLUSTER NODES (${errors.join('; ')})`);
  }

  private handle(port: number): RedisServerHandle | undefined {
    return this.nodes.find((node) => node.port === port);
  }

  private handles(entries: readonly ClusterNodeEntry[]): RedisServerHandle[] {
    return entries
      .map((entry) => this.handle(entry.port))
      .filter((node): node is RedisServerHandle => node !== undefined)
      .sort((a, b) => this.nodes.indexOf(a) - this.nodes.indexOf(b));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Redis Sentinel
// ---------------------------------------------------------------------------------------------------------------

/** Options for {@link startSentinel}. */
export interface StartSentinelOptions {
  /** Replicas of the master. At least 1 (a failover needs one). Default 1. */
  replicas?: number;
  /** Sentinel processes. Default 3. */
  sentinels?: number;
  /** The name the sentinels monitor the master under. Default `mymaster`. */
  masterName?: string;
  /** Sentinels that must agree the master is down. Default a majority: 2 of 3. */
  quorum?: number;
  /** `sentinel down-after-milliseconds`: a master silent this long is down. Default 1000 (Redis: 30 s). */
  downAfterMs?: number;
  /** `sentinel failover-timeout`; a failed attempt is retried after twice this. Default 3000 (Redis: 3 min). */
  failoverTimeoutMs?: number;
  /** Extra `redis-server` arguments for the data nodes (not the sentinels); they come last. No `--requirepass`. */
  args?: string[];
  /** Bound for the replicas to sync and every sentinel to know them and the other sentinels. Default 15 s. */
  timeoutMs?: number;
}

/** A running master, its replicas and their sentinels; see {@link startSentinel}. */
export interface SentinelHandle {
  /** The master name the sentinels monitor (for ioredis' `name` option). */
  readonly name: string;
  /** The data nodes: the first master first, then its replicas. Roles change with failovers: ask {@link SentinelHandle.master}. */
  readonly servers: readonly RedisServerHandle[];
  /** `{ host, port }` of every sentinel, for ioredis' `sentinels` option. */
  readonly sentinels: readonly RedisAddress[];
  /** The sentinel processes, in the order of {@link SentinelHandle.sentinels}. */
  readonly sentinelServers: readonly RedisServerHandle[];
  /**
   * The current master, by `SENTINEL GET-MASTER-ADDR-BY-NAME` to the first sentinel that answers.
   * @throws Error if no sentinel answers, or it names a server not of this set.
   */
  master(): Promise<RedisServerHandle>;
  /**
   * `SENTINEL FAILOVER <name>` (a forced failover, no agreement needed; retried while the sentinel has no good
   * replica yet), then wait until every live sentinel names another master and that one answers `ROLE` master.
   * The old master stays up, and a master, for about 10 s: then sentinels make it a replica of the new one
   * (see {@link SentinelHandle.waitReplicas}). Sentinels also kill the normal client connections of both nodes.
   * @param timeoutMs - default 15 s.
   * @returns the new master.
   * @throws Error on timeout.
   */
  failover(timeoutMs?: number): Promise<RedisServerHandle>;
  /**
   * SIGKILL the current master (a crash), then wait until the sentinels agree it is down, elect a leader and
   * promote a replica: every live sentinel names the new master and it answers `ROLE` master.
   * @param timeoutMs - default 15 s (a split vote is retried after twice `failoverTimeoutMs`).
   * @returns the new master.
   * @throws Error on timeout.
   */
  killMaster(timeoutMs?: number): Promise<RedisServerHandle>;
  /**
   * Wait until every live data node other than the current master replicates it with the link up, and every
   * live sentinel knows those replicas, connected and not down: what a next {@link SentinelHandle.failover}
   * needs. After a failover, sentinels reconfigure a surviving old master about 10 s later (a fixed 8 s
   * grace, then their next INFO), so this takes that long.
   * @param timeoutMs - default 15 s.
   * @throws Error on timeout.
   */
  waitReplicas(timeoutMs?: number): Promise<void>;
  /** Stop the sentinels first (so that they do not fail over meanwhile), then the data nodes. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Start a master, `replicas` replicas of it (`--replicaof 127.0.0.1 <port>`) and `sentinels` sentinels
 * (`redis-server <conf> --sentinel`), each sentinel with a writable config file of its own holding `port`,
 * `bind 127.0.0.1`, `sentinel monitor <name> 127.0.0.1 <master port> <quorum>`, `down-after-milliseconds`,
 * `failover-timeout` and `resolve-hostnames no`.
 *
 * @returns once every replica's link is up and every sentinel knows every replica (healthy) and the other
 * sentinels, so that a failover can start at once.
 * @throws Error if a server does not start or the set is not ready within `timeoutMs`; the servers started are stopped first.
 * @example
 * ```ts
 * const set = await startSentinel();
 * const client = new Redis({ sentinels: [...set.sentinels], name: set.name });
 * await set.failover();
 * afterAll(() => stopAllTopologies());
 * ```
 */
export async function startSentinel(opts: StartSentinelOptions = {}): Promise<SentinelHandle> {
  const replicaCount = opts.replicas ?? 1;
  const sentinelCount = opts.sentinels ?? 3;
  const name = opts.masterName ?? 'mymaster';
  const quorum = opts.quorum ?? Math.floor(sentinelCount / 2) + 1;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS;
  if (!Number.isInteger(replicaCount) || replicaCount < 1)
    throw new Error(`startSentinel: replicas must be an integer >= 1, got ${replicaCount}`);
  if (!Number.isInteger(sentinelCount) || sentinelCount < 1) {
    throw new Error(`startSentinel: sentinels must be an integer >= 1, got ${sentinelCount}`);
  }
  if (!Number.isInteger(quorum) || quorum < 1 || quorum > sentinelCount) {
    throw new Error(`startSentinel: quorum must be an integer in 1..${sentinelCount}, got ${quorum}`);
  }
  if (!/^[\w.-]+$/.test(name)) throw new Error(`startSentinel: masterName must be letters, digits, '_', '.' or '-', got "${name}"`);
  const dataArgs = [...REPLICATION_ARGS, ...(opts.args ?? [])];

  const master = await startRedis({ persist: true, args: dataArgs });
  const started: RedisServerHandle[] = [master];
  try {
    const replicas = await startAll(
      Array.from(
        { length: replicaCount },
        () => () =>
          startRedis({ persist: true, args: [...REPLICATION_ARGS, '--replicaof', HOST, String(master.port), ...(opts.args ?? [])] }),
      ),
    );
    started.push(...replicas);
    await waitUntil('the replicas to sync', timeoutMs, async () => {
      const links = await Promise.all(replicas.map((replica) => replicationInfo(replica.port).catch(() => ({}) as Record<string, string>)));
      const down = replicas.filter((_, i) => links[i]!.master_link_status !== 'up');
      return down.length === 0 ? { value: undefined } : `replica link not up yet on ${down.map((replica) => replica.port).join(', ')}`;
    });

    const config = (port: number): string =>
      [
        `port ${port}`,
        `bind ${HOST}`,
        `sentinel monitor ${name} ${HOST} ${master.port} ${quorum}`,
        `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1_000}`,
        `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? 3_000}`,
        'sentinel resolve-hostnames no',
      ].join('\n');
    const sentinels = await startAll(Array.from({ length: sentinelCount }, () => () => startRedis({ config, args: ['--sentinel'] })));
    started.push(...sentinels);

    const set = new RedisSentinelSet(name, [master, ...replicas], sentinels);
    await waitUntil('the sentinels to know the replicas and each other', timeoutMs, async () => {
      for (const sentinel of sentinels) {
        const state = await sentinelMaster(sentinel.port, name);
        if (Number(state['num-other-sentinels']) !== sentinelCount - 1) {
          return `sentinel ${sentinel.port} knows ${state['num-other-sentinels']} other sentinels`;
        }
        const unready = await unreadyReplicas(sentinel.port, name, replicas, master.port);
        if (unready) return `sentinel ${sentinel.port}: ${unready}`;
      }
      return { value: undefined };
    });
    topologies.add(set);
    return set;
  } catch (error) {
    // Sentinels first, so that none fails over while the data nodes go.
    await Promise.all(started.slice(1 + replicaCount).map((server) => server.stop()));
    await Promise.all(started.slice(0, 1 + replicaCount).map((server) => server.stop()));
    throw error;
  }
}

class RedisSentinelSet implements SentinelHandle {
  readonly sentinels: readonly RedisAddress[];
  private stopping?: Promise<void>;

  constructor(
    readonly name: string,
    readonly servers: readonly RedisServerHandle[],
    readonly sentinelServers: readonly RedisServerHandle[],
  ) {
    this.sentinels = sentinelServers.map((sentinel) => ({ host: sentinel.host, port: sentinel.port }));
  }

  async master(): Promise<RedisServerHandle> {
    const errors: string[] = [];
    for (const sentinel of this.sentinelServers) {
      try {
        return this.server(await masterPort(sentinel.port, this.name));
      } catch (error) {
        errors.push(`${sentinel.port}: ${(error as Error).message}`);
      }
    }
    throw new Error(`No sentinel named the master of ${this.name} (${errors.join('; ')})`);
  }

  async failover(timeoutMs = DEFAULT_WAIT_MS): Promise<RedisServerHandle> {
    const deadline = Date.now() + timeoutMs;
    const old = await this.master();
    // NOGOODSLAVE until a sentinel has fresh INFO of a healthy replica: retry within the bound.
    await waitUntil(`a sentinel to accept SENTINEL FAILOVER ${this.name}`, timeoutMs, async () => {
      const errors: string[] = [];
      for (const sentinel of await liveNodes(this.sentinelServers)) {
        try {
          await command(sentinel.port, ['SENTINEL', 'FAILOVER', this.name]);
          return { value: undefined };
        } catch (error) {
          if (/INPROG/.test((error as Error).message)) return { value: undefined }; // one is under way: wait for it
          errors.push(`${sentinel.port}: ${(error as Error).message}`);
        }
      }
      return errors.join('; ') || 'no sentinel answers';
    });
    return this.waitNewMaster(old, Math.max(0, deadline - Date.now()));
  }

  async killMaster(timeoutMs = DEFAULT_WAIT_MS): Promise<RedisServerHandle> {
    const deadline = Date.now() + timeoutMs;
    const old = await this.master();
    await old.kill();
    return this.waitNewMaster(old, Math.max(0, deadline - Date.now()));
  }

  async waitReplicas(timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    await waitUntil('the replicas to follow the master', timeoutMs, async () => {
      const master = await this.agreedMaster();
      if (typeof master === 'string') return master;
      const replicas = (await liveNodes(this.servers)).filter((server) => server !== master);
      for (const replica of replicas) {
        const info = await replicationInfo(replica.port);
        if (info.role !== 'slave' || Number(info.master_port) !== master.port || info.master_link_status !== 'up') {
          return `${replica.port} is ${info.role} of ${info.master_port ?? '-'} (link ${info.master_link_status ?? '-'})`;
        }
      }
      for (const sentinel of await liveNodes(this.sentinelServers)) {
        const unready = await unreadyReplicas(sentinel.port, this.name, replicas);
        if (unready) return `sentinel ${sentinel.port}: ${unready}`;
      }
      return { value: undefined };
    });
  }

  stop(): Promise<void> {
    topologies.delete(this);
    this.stopping ??= (async () => {
      await Promise.all(this.sentinelServers.map((sentinel) => sentinel.stop()));
      await Promise.all(this.servers.map((server) => server.stop()));
    })();
    return this.stopping;
  }

  /** Until every live sentinel names one master other than `old`, and it says ROLE master. */
  private waitNewMaster(old: RedisServerHandle, timeoutMs: number): Promise<RedisServerHandle> {
    return waitUntil(`the sentinels to promote a replica of ${old.port}`, timeoutMs, async () => {
      const master = await this.agreedMaster();
      if (typeof master === 'string') return master;
      return master === old ? `the sentinels still name ${old.port}` : { value: master };
    });
  }

  /** The master every live sentinel names, if it answers ROLE master; else why not. */
  private async agreedMaster(): Promise<RedisServerHandle | string> {
    const sentinels = await liveNodes(this.sentinelServers);
    if (sentinels.length === 0) return 'no sentinel answers PING';
    const ports = await Promise.all(sentinels.map((sentinel) => masterPort(sentinel.port, this.name)));
    if (new Set(ports).size > 1) return `the sentinels name different masters: ${ports.join(', ')}`;
    const master = this.server(ports[0]!);
    const role = await command(master.port, ['ROLE']).catch((error: Error) => [error.message]);
    return Array.isArray(role) && role[0] === 'master'
      ? master
      : `${master.port} says ROLE ${String(Array.isArray(role) ? role[0] : role)}`;
  }

  private server(port: number): RedisServerHandle {
    const server = this.servers.find((candidate) => candidate.port === port);
    if (!server) throw new Error(`the sentinels name ${HOST}:${port}, which is not a server of this set`);
    return server;
  }
}

async function masterPort(sentinelPort: number, name: string): Promise<number> {
  const reply = await command(sentinelPort, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name]);
  if (!Array.isArray(reply) || reply.length !== 2) throw new Error(`no master named ${name}`);
  return Number(reply[1]);
}

async function sentinelMaster(sentinelPort: number, name: string): Promise<Record<string, string>> {
  return pairs(await command(sentinelPort, ['SENTINEL', 'MASTER', name]));
}

/**
 * Why the sentinel would not pick the replicas (unknown, down, disconnected), or undefined if all are fine.
 * With `synced`, also what it last read of their link to `synced` (a master port). It reads a replica's INFO
 * only every 10 s, so that is checked only at start, when the replicas synced before the sentinels came.
 */
async function unreadyReplicas(
  sentinelPort: number,
  name: string,
  replicas: readonly RedisServerHandle[],
  synced?: number,
): Promise<string | undefined> {
  const reply = await command(sentinelPort, ['SENTINEL', 'REPLICAS', name]);
  const known = new Map((Array.isArray(reply) ? reply : []).map((entry) => pairs(entry)).map((state) => [Number(state.port), state]));
  for (const replica of replicas) {
    const state = known.get(replica.port);
    if (!state) return `replica ${replica.port} not known yet`;
    if (state.flags !== 'slave') return `replica ${replica.port} flags ${state.flags}`;
    if (synced === undefined) continue;
    if (state['master-link-status'] !== 'ok') return `replica ${replica.port} link ${state['master-link-status']}`;
    if (Number(state['master-port']) !== synced) return `replica ${replica.port} follows ${state['master-port']}`;
  }
  return undefined;
}

/** A flat `[field, value, ...]` reply as a record. */
function pairs(reply: Reply): Record<string, string> {
  const record: Record<string, string> = {};
  if (!Array.isArray(reply)) return record;
  for (let i = 0; i + 1 < reply.length; i += 2) record[String(reply[i])] = String(reply[i + 1]);
  return record;
}

// ---------------------------------------------------------------------------------------------------------------
// Every topology
// ---------------------------------------------------------------------------------------------------------------

const topologies = new Set<ClusterHandle | SentinelHandle>();

/**
 * Stop every cluster and sentinel set this process started and has not stopped yet. {@link stopAll} stops
 * their servers too (all at once); this one stops sentinels before their data nodes.
 */
export async function stopAllTopologies(): Promise<void> {
  await Promise.all([...topologies].map((topology) => topology.stop()));
}

/** Run the starters concurrently; if one fails, stop those that started and throw its error. */
async function startAll(starters: readonly (() => Promise<RedisServerHandle>)[]): Promise<RedisServerHandle[]> {
  const results = await Promise.allSettled(starters.map((start) => start()));
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (!failed) return results.map((result) => (result as PromiseFulfilledResult<RedisServerHandle>).value);
  const started = results.filter((result): result is PromiseFulfilledResult<RedisServerHandle> => result.status === 'fulfilled');
  await Promise.all(started.map((result) => result.value.stop()));
  const reason: unknown = failed.reason;
  throw reason;
}

/** The nodes that answer PING now. */
async function liveNodes(nodes: readonly RedisServerHandle[]): Promise<RedisServerHandle[]> {
  const up = await Promise.all(nodes.map((node) => pingRedis(node.host, node.port, PING_TIMEOUT_MS)));
  return nodes.filter((_, i) => up[i]);
}

async function replicationInfo(port: number): Promise<Record<string, string>> {
  return parseInfo(String(await command(port, ['INFO', 'replication'])));
}

/** `field:value` lines (of `INFO`, `CLUSTER INFO`) as a record. */
function parseInfo(text: string): Record<string, string> {
  const record: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) record[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return record;
}

/**
 * Poll `check` every `intervalMs` until it returns `{ value }`, for at most `timeoutMs` (and as many attempts as
 * fit). A string (or a thrown error) says what is not right yet; the last one is in the timeout error.
 */
async function waitUntil<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<{ value: T } | string>,
  intervalMs = POLL_MS,
): Promise<T> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  const maxAttempts = Math.ceil(timeoutMs / intervalMs) + 1;
  let last = 'not checked';
  for (let attempt = 0; attempt < maxAttempts && Date.now() < deadline; attempt++) {
    try {
      const result = await check();
      if (typeof result !== 'string') return result.value;
      last = result;
    } catch (error) {
      last = (error as Error).message;
    }
    await delay(Math.max(0, Math.min(intervalMs, deadline - Date.now())));
  }
  throw new Error(`Timed out after ${Date.now() - started} ms waiting for ${what}: ${last}`);
}

/** Run `redis-cli` with a time bound; its stdout and stderr together, without colours. */
function runCli(args: readonly string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
  const bin = process.env.REDIS_CLI_BIN ?? 'redis-cli';
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: CLI_TIMEOUT_MS, killSignal: 'SIGKILL' });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.once('error', (error) => reject(new Error(`Could not run ${bin}: ${error.message}. Install redis-cli or set REDIS_CLI_BIN.`)));
    child.once('close', (code, signal) => {
      // eslint-disable-next-line no-control-regex
      resolve({ code, signal, output: output.replace(/\x1b\[[0-9;]*m/g, '') });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// A minimal RESP2 client: one connection per command, bounded in time
// ---------------------------------------------------------------------------------------------------------------

type Reply = string | number | null | Reply[];

/**
 * Send one command on a fresh connection and read its reply.
 * @throws Error with the server's message on an error reply; Error on a connection error or after `timeoutMs`.
 */
function command(port: number, args: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    let settled = false;
    const socket = connect({ host: HOST, port });
    const finish = (error: Error | undefined, reply?: Reply): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (error) reject(error);
      else resolve(reply ?? null);
    };
    socket.setTimeout(timeoutMs, () => finish(new Error(`${args.join(' ')}: no reply within ${timeoutMs} ms`)));
    socket.once('error', (error) => finish(error));
    socket.once('close', () => finish(new Error(`${args.join(' ')}: connection closed`)));
    socket.once('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`);
    });
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      try {
        const parsed = parseReply(buffer, 0);
        if (parsed) finish(parsed.error, parsed.reply);
      } catch (error) {
        finish(error as Error);
      }
    });
  });
}

/** One reply at `pos`, or undefined if incomplete; a top-level error reply comes back as `error`. */
function parseReply(buffer: Buffer, pos: number): { reply: Reply; end: number; error?: Error } | undefined {
  const eol = buffer.indexOf('\r\n', pos);
  if (eol < 0) return undefined;
  const type = String.fromCharCode(buffer[pos]!);
  const line = buffer.toString('utf8', pos + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return { reply: line, end: next };
    case '-':
      return { reply: null, end: next, error: new Error(line) };
    case ':':
      return { reply: Number(line), end: next };
    case '$': {
      const length = Number(line);
      if (length < 0) return { reply: null, end: next };
      if (buffer.length < next + length + 2) return undefined;
      return { reply: buffer.toString('utf8', next, next + length), end: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { reply: null, end: next };
      const items: Reply[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buffer, at);
        if (!item) return undefined;
        items.push(item.error ? item.error.message : item.reply);
        at = item.end;
      }
      return { reply: items, end: at };
    }
    default:
      throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`);
  }
}
