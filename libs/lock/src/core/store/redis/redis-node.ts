import type { Cluster, Redis } from 'ioredis';
import { monotonic } from '../../clock.js';
import { settlesWithin } from '../../deadlines.js';
import { LockStoreError } from '../../errors.js';
import type { Script } from './scripts.js';

/** A connection the Redis stores run their scripts on: one server (also through Sentinel) or a Cluster. */
export type RedisConnection = Redis | Cluster;

/** Settings of a {@link RedisNode}. @internal */
export interface RedisNodeOptions {
  /** Close the client on `close()` (true when the library created it). */
  readonly owns: boolean;
  /** How long a connection check (PING) may take before the connection is replaced. */
  readonly probeMs: number;
  /** The last error the connection reported (redacted), for messages. */
  readonly lastError?: () => unknown;
}

/**
 * One connection the stores run their scripts on: typed script calls with the EVALSHA→EVAL fallback,
 * the count of reconnects (a command on its way across one may have been re-sent by ioredis), the
 * check of a connection that stopped answering, and a bounded close. Shared by the single-node,
 * Cluster and quorum stores (one per node there).
 * @internal
 */
export class RedisNode {
  /** Connection closes seen: a command on its way across one may be re-sent by ioredis. */
  closes = 0;
  private handshakeSince?: number;
  private probing = false;
  private closed = false;
  /** Other connections to replace together with this one when it stops answering (its subscriber). */
  readonly companions = new Set<{ disconnect(reconnect?: boolean): void }>();

  constructor(
    readonly client: RedisConnection,
    private readonly options: RedisNodeOptions,
  ) {
    // Listening to these does not change what ioredis logs (only an 'error' listener would).
    client.on?.('connect', this.onConnect);
    client.on?.('ready', this.onReady);
    client.on?.('close', this.onClose);
    if (this.isCluster) {
      // A Cluster client emits 'close' only when it closes as a whole, but re-sends a command whose
      // node connection closed (to the node's successor after a failover): count those closes too.
      const cluster = client as Cluster;
      cluster.on('+node', this.onNode);
      cluster.on('-node', this.onNodeGone);
      for (const node of cluster.nodes('all')) this.onNode(node);
    }
  }

  /** The Cluster's node connections whose closes are counted. */
  private readonly nodes = new Set<Redis>();
  private readonly onNode = (node: Redis): void => {
    if (this.nodes.has(node)) return;
    this.nodes.add(node);
    node.on('close', this.onClose);
  };
  private readonly onNodeGone = (node: Redis): void => {
    this.closes++;
    this.nodes.delete(node);
    node.off('close', this.onClose);
  };

  /** True for an ioredis Cluster client. */
  get isCluster(): boolean {
    return (this.client as { isCluster?: boolean }).isCluster === true;
  }

  private readonly onClose = (): void => {
    this.closes++;
  };
  private readonly onConnect = (): void => {
    this.handshakeSince = monotonic();
  };
  private readonly onReady = (): void => {
    this.handshakeSince = undefined;
  };

  /** Runs `script` (EVALSHA, then EVAL when the server does not know it yet). */
  run(script: Script, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    // A database the server refused on connect (ioredis then stays in DB 0): never lock there.
    const refusal = this.options.lastError?.();
    if (refusal instanceof LockStoreError) return Promise.reject(refusal);
    const client = this.client as Redis;
    return client.evalsha(script.sha, keys.length, ...keys, ...args).catch((error: unknown) => {
      // First use on this server (or after SCRIPT FLUSH): EVAL also caches the script.
      if (error instanceof Error && error.message.startsWith('NOSCRIPT')) return client.eval(script.source, keys.length, ...keys, ...args);
      throw error;
    });
  }

  lastError(): unknown {
    return this.options.lastError?.();
  }

  /**
   * A call got no answer in time. If the connection does not answer a PING within probeMs either,
   * it is replaced (a frozen or half-open socket would otherwise keep the store dead): ioredis
   * reconnects and re-sends what was unanswered, which every script tolerates. One probe at a time.
   * A Cluster client checks its nodes itself (it refreshes its slots and reconnects on its own).
   */
  suspect(): void {
    if (this.closed || this.probing || this.isCluster) return;
    const client = this.client as Redis;
    if (client.status === 'connect' && this.handshakeSince !== undefined && monotonic() - this.handshakeSince > this.options.probeMs) {
      // Connected, but the handshake (AUTH, SELECT, the ready check) never answered: ioredis has no
      // timeout for that stage, so start over.
      this.handshakeSince = monotonic();
      this.replace();
      return;
    }
    if (client.status !== 'ready') return;
    this.probing = true;
    void settlesWithin(client.ping(), this.options.probeMs).then((answered) => {
      this.probing = false;
      if (!answered && !this.closed) this.replace();
    });
  }

  private replace(): void {
    (this.client as Redis).disconnect(true);
    for (const companion of this.companions) companion.disconnect(true);
  }

  /** Stops listening to the client, and closes it if owned: QUIT, bounded by `timeoutMs`. */
  async close(timeoutMs?: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.off?.('connect', this.onConnect);
    this.client.off?.('ready', this.onReady);
    this.client.off?.('close', this.onClose);
    if (this.isCluster) {
      this.client.off('+node', this.onNode);
      this.client.off('-node', this.onNodeGone);
      for (const node of this.nodes) node.off('close', this.onClose);
      this.nodes.clear();
    }
    if (this.options.owns) await quit(this.client, timeoutMs);
  }
}

/** QUIT, bounded: a server that does not answer gets its socket closed after `timeoutMs`. */
export async function quit(client: RedisConnection, timeoutMs = Infinity): Promise<void> {
  if (client.status === 'end') return;
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  await settlesWithin(client.quit(), Number.isFinite(timeoutMs) ? Math.max(1, timeoutMs) : 2 ** 31 - 1);
  // QUIT leaves a Sentinel client's failover-detector connections open; disconnect() closes them.
  if ((client.status as string) !== 'end' || (client.options as { sentinels?: unknown } | undefined)?.sentinels) client.disconnect();
}
