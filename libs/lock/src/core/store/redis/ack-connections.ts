import type { Cluster, Redis } from 'ioredis';
import { settlesWithin } from '../../deadlines.js';
import { LockStoreError } from '../../errors.js';
import type { RedisConnection } from './redis-node.js';
import type { Script } from './scripts.js';

/** Connections kept per primary for acquisitions under replicaAck: WAITs on one connection run one after another. */
const PER_PRIMARY = 4;
/** Redirections (MOVED, ASK) one acquisition follows before its attempt fails (and is retried within the wait). */
const MAX_REDIRECTS = 3;

/** The reply of an acquire script and how many replicas acknowledged it. @internal */
export interface Acknowledged {
  readonly reply: unknown;
  readonly acknowledged: number;
}

/** One connection of a pool, with the number of pipelines it is running. */
interface Entry {
  readonly client: Redis;
  busy: number;
}

/**
 * The connections that run acquisitions under `replicaAck`: the acquire script then `WAIT replicas
 * timeout`, in one pipeline on one connection, because WAIT counts the writes of its own connection and
 * blocks it while it waits (heartbeats and releases go on the store's command connection instead).
 *
 * Up to {@link PER_PRIMARY} connections per primary, each WAIT on the least busy one, so concurrent
 * acquisitions do not queue behind one another's WAIT. On a Cluster the pipeline goes straight to the
 * primary of the keys' slot (a plain connection, duplicated from the Cluster's own to that node), and
 * follows MOVED (with a slot refresh) and ASK (with ASKING) itself, since a Cluster client does not
 * redirect a pipeline whose WAIT succeeded on the wrong node.
 * @internal
 */
export class AckConnections {
  /** Pools by primary address ("host:port"; "" for the one server of a non-Cluster client). */
  private readonly pools = new Map<string, Entry[]>();
  private closed = false;

  constructor(
    private readonly client: RedisConnection,
    /** The refusal of a database or user that forbids running anything (a LockStoreError), if any. */
    private readonly refusal: () => unknown,
  ) {}

  private get cluster(): Cluster | undefined {
    return (this.client as { isCluster?: boolean }).isCluster === true ? (this.client as Cluster) : undefined;
  }

  /**
   * Runs `script` and WAIT on a connection to the primary of `slot` (ignored without a Cluster).
   * @throws the script's error, a redirection error after {@link MAX_REDIRECTS}, or an Error when the
   *   Cluster knows no primary for the slot yet (the attempt fails and is retried).
   */
  async run(
    script: Script,
    slot: number,
    keys: readonly string[],
    args: readonly (string | number)[],
    replicas: number,
    timeout: number,
  ): Promise<Acknowledged> {
    const refusal = this.refusal();
    if (refusal instanceof LockStoreError) throw refusal;
    let address = this.cluster ? this.primaryOf(slot) : '';
    let asking = false;
    for (let hop = 0; ; hop++) {
      const entry = this.entry(address);
      entry.busy++;
      let results: [Error | null, unknown][];
      try {
        results = await pipelined(entry.client, script, keys, args, replicas, timeout, asking, true);
        if (isNoScript(results[asking ? 1 : 0]?.[0]))
          results = await pipelined(entry.client, script, keys, args, replicas, timeout, asking, false);
      } finally {
        entry.busy--;
      }
      if (asking) results = results.slice(1);
      const [scriptError, reply] = results[0] ?? [new Error('no reply'), undefined];
      const redirect = scriptError && this.cluster && hop < MAX_REDIRECTS ? redirection(scriptError) : undefined;
      if (redirect) {
        // MOVED: the slot map is stale (a failover, a finished migration): refresh it for everyone.
        if (redirect.moved) this.cluster!.refreshSlotsCache();
        address = redirect.address;
        asking = !redirect.moved;
        continue;
      }
      if (scriptError) throw scriptError;
      const [waitError, acknowledged] = results[1] ?? [null, 0];
      return { reply, acknowledged: waitError ? 0 : Number(acknowledged) };
    }
  }

  /**
   * A call got no answer in time: an idle connection that does not answer a PING within `probeMs` is
   * closed (a busy one may be inside a WAIT). A duplicate of a single-server client reconnects; one to
   * a Cluster node ends and is opened again on demand.
   */
  suspect(probeMs: number): void {
    for (const pool of this.pools.values()) {
      for (const entry of pool) {
        if (entry.busy > 0 || entry.client.status !== 'ready') continue;
        void settlesWithin(entry.client.ping(), probeMs).then((answered) => {
          if (!answered && !this.closed) entry.client.disconnect(!this.cluster);
        });
      }
    }
  }

  /** Closes every connection at once (nothing of value is in flight on them: an acquisition is retried). */
  close(): void {
    this.closed = true;
    for (const pool of this.pools.values()) for (const entry of pool) entry.client.disconnect();
    this.pools.clear();
  }

  /** The primary that serves `slot`, as the Cluster client last learnt it. */
  private primaryOf(slot: number): string {
    const address = this.cluster!.slots[slot]?.[0];
    if (address === undefined) {
      this.cluster!.refreshSlotsCache();
      throw new Error(`the Cluster knows no primary for hash slot ${slot} yet`);
    }
    return address;
  }

  /** The least busy connection to `address`, opening one more while all are busy and there are fewer than the limit. */
  private entry(address: string): Entry {
    if (this.closed) throw new Error('the lock store is closed');
    let pool = this.pools.get(address);
    if (!pool) this.pools.set(address, (pool = []));
    // Connections that ended for good (a node removed from the Cluster) make room for new ones.
    for (let i = pool.length - 1; i >= 0; i--) if (pool[i]!.client.status === 'end') pool.splice(i, 1);
    let best: Entry | undefined;
    for (const entry of pool) if (!best || entry.busy < best.busy) best = entry;
    if (best && (best.busy === 0 || pool.length >= PER_PRIMARY)) return best;
    const client = this.open(address);
    client.on('error', () => undefined);
    const entry: Entry = { client, busy: 0 };
    pool.push(entry);
    return entry;
  }

  private open(address: string): Redis {
    const cluster = this.cluster;
    if (!cluster) return (this.client as Redis).duplicate();
    // From the Cluster's own connection to the node (its redisOptions: TLS, credentials, natMap'd
    // address; no reconnects: a connection that ends is dropped from the pool and opened again on
    // demand). The Cluster's keyPrefix is applied by the Cluster client, so it is given here.
    const nodes = cluster.nodes('all');
    const node = nodes.find((candidate) => `${candidate.options.host}:${candidate.options.port}` === address);
    const keyPrefix = cluster.options.keyPrefix;
    if (node) return node.duplicate({ keyPrefix, lazyConnect: false, enableOfflineQueue: true });
    // A redirection to a node the Cluster client has not connected to yet.
    if (!nodes[0]) throw new Error(`the Cluster has no connection to copy for ${address}`);
    const [host, port] = splitAddress(address);
    return nodes[0].duplicate({ host, port, keyPrefix, lazyConnect: false, enableOfflineQueue: true, readOnly: false });
  }
}

/** EVALSHA (or EVAL) then WAIT in one pipeline, after ASKING when following an ASK redirection. */
async function pipelined(
  client: Redis,
  script: Script,
  keys: readonly string[],
  args: readonly (string | number)[],
  replicas: number,
  timeout: number,
  asking: boolean,
  evalsha: boolean,
): Promise<[Error | null, unknown][]> {
  const pipeline = client.pipeline();
  if (asking) pipeline.asking();
  if (evalsha) pipeline.evalsha(script.sha, keys.length, ...keys, ...args);
  else pipeline.eval(script.source, keys.length, ...keys, ...args);
  return ((await pipeline.wait(replicas, timeout).exec()) ?? []) as [Error | null, unknown][];
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/** "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381": where to go instead. */
function redirection(error: Error): { moved: boolean; address: string } | undefined {
  const match = /^(MOVED|ASK) \d+ (\S+)$/.exec(error.message);
  return match ? { moved: match[1] === 'MOVED', address: match[2]! } : undefined;
}

function splitAddress(address: string): [string, number] {
  const at = address.lastIndexOf(':');
  return [address.slice(0, at), Number(address.slice(at + 1))];
}
