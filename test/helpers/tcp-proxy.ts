/**
 * A TCP proxy for fault tests: it sits on a free 127.0.0.1 port in front of a (private, loopback)
 * Redis and can freeze, cut, refuse and damage connections on command, so a test can play a frozen
 * network path, a half-open connection or a reply lost on the wire without touching the server.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

const HOST = '127.0.0.1';
const DEFAULT_MAX_CONNECTIONS = 256;
const DEFAULT_DROP_TIMEOUT_MS = 10_000;

/** Options for {@link startTcpProxy}. */
export interface TcpProxyOptions {
  /** Port of the server to forward to (on 127.0.0.1: the proxy only ever talks to loopback). */
  readonly targetPort: number;
  /** Connections open at once before new ones are refused by the OS backlog. Default 256. */
  readonly maxConnections?: number;
}

/** Which connections {@link TcpProxy.blackhole} freezes. */
export type BlackholeScope =
  /** Every connection, open now or opened while the black hole lasts. */
  | 'all'
  /** Only the connections open now; new ones pass (a half-open path: old sockets dead, reconnects work). */
  | 'existing';

/** What {@link TcpProxy.refuseNew} does with a new connection. */
export type RefuseMode =
  /** Forward as usual. */
  | false
  /**
   * Accept it, never connect it upstream and never answer: a connect that "succeeds" into nothing (a load
   * balancer in front of a dead server). The TCP handshake completes, so ioredis' `connectTimeout`, which
   * covers only the handshake, does not fire: its ready check waits for ever.
   */
  | 'hang'
  /** Accept it and close it at once. */
  | 'close';

/** What {@link TcpProxy.dropNextReply} swallowed. */
export interface DroppedReply {
  /** Bytes of the swallowed chunk. */
  readonly bytes: number;
  /** The first 80 bytes, latin1, for failure messages. */
  readonly preview: string;
  /** Date.now() when it was swallowed. */
  readonly at: number;
}

/** Options of {@link TcpProxy.dropNextReply}. */
export interface DropReplyOptions {
  /** Only a chunk for which this returns true is dropped; others pass. Default: the next chunk of any connection. */
  readonly match?: (chunk: Buffer) => boolean;
  /** Disarm after this long if nothing was dropped (the promise then resolves undefined). Default 10 s. */
  readonly timeoutMs?: number;
}

/** A running proxy; see {@link startTcpProxy}. */
export interface TcpProxy {
  /** Always `127.0.0.1`. */
  readonly host: string;
  /** The port clients connect to. */
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Client connections open now (hung ones included). */
  readonly connections: number;
  /** Client connections accepted since start. */
  readonly accepted: number;
  /**
   * On: stop forwarding bytes in both directions, keep every socket open (a frozen path: writes are
   * accepted by the kernel and go nowhere, nothing is read, no FIN, no RST). Off: thaw every frozen
   * connection; bytes written meanwhile are then delivered, as TCP retransmission would.
   * @param scope - `'all'` (default) or `'existing'`; see {@link BlackholeScope}.
   */
  blackhole(on: boolean, scope?: BlackholeScope): void;
  /** Destroys every connection open now (both sides); the proxy keeps accepting new ones. */
  killExisting(): void;
  /** What to do with connections accepted from now on; see {@link RefuseMode}. Hung connections stay hung until killed or closed. */
  refuseNew(mode: RefuseMode): void;
  /**
   * Arms a lost reply: the next chunk the server sends to a client (that `match`es) is swallowed and
   * that client's connection is destroyed, so the client reconnects and, like ioredis, may re-send the
   * command whose reply it never saw.
   * @returns resolves once a chunk was dropped (undefined if none came within `timeoutMs`).
   * @throws Error if a drop is already armed.
   */
  dropNextReply(options?: DropReplyOptions): Promise<DroppedReply | undefined>;
  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void>;
}

interface Pair {
  readonly client: Socket;
  readonly upstream?: Socket;
  frozen: boolean;
}

interface ArmedDrop {
  readonly match: (chunk: Buffer) => boolean;
  readonly resolve: (dropped: DroppedReply | undefined) => void;
  readonly timer: NodeJS.Timeout;
}

const live = new Set<TcpProxy>();

/**
 * Starts a proxy on a free 127.0.0.1 port that forwards to 127.0.0.1:`targetPort`.
 * Nothing of it keeps the process alive (server and sockets are unref'd); close it in `afterAll`.
 *
 * @throws Error if the port cannot be bound.
 * @example
 * ```ts
 * const server = await startRedis();
 * const proxy = await startTcpProxy({ targetPort: server.port });
 * const redis = new Redis(proxy.url);
 * proxy.blackhole(true); // redis.ping() now hangs
 * ```
 */
export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const proxy = new ProxyServer(options.targetPort);
  await proxy.listen(options.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
  live.add(proxy);
  return proxy;
}

/** Closes every proxy this process started and has not closed yet. */
export async function closeAllProxies(): Promise<void> {
  await Promise.all([...live].map((proxy) => proxy.close()));
}

class ProxyServer implements TcpProxy {
  readonly host = HOST;
  private readonly server: Server;
  private readonly pairs = new Set<Pair>();
  private frozenForNew = false;
  private refuse: RefuseMode = false;
  private armed?: ArmedDrop;
  private acceptedCount = 0;
  private closing?: Promise<void>;

  constructor(private readonly targetPort: number) {
    this.server = createServer((socket) => this.accept(socket));
  }

  get port(): number {
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('the proxy is not listening');
    return address.port;
  }

  get url(): string {
    return `redis://${HOST}:${this.port}`;
  }

  get connections(): number {
    return this.pairs.size;
  }

  get accepted(): number {
    return this.acceptedCount;
  }

  listen(maxConnections: number): Promise<void> {
    this.server.maxConnections = maxConnections;
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, HOST, () => {
        this.server.off('error', reject);
        this.server.unref();
        resolve();
      });
    });
  }

  blackhole(on: boolean, scope: BlackholeScope = 'all'): void {
    if (on) {
      if (scope === 'all') this.frozenForNew = true;
      for (const pair of this.pairs) this.freeze(pair);
      return;
    }
    this.frozenForNew = false;
    for (const pair of this.pairs) {
      // A hung connection has no upstream: thawing it would not make it talk.
      if (!pair.upstream) continue;
      pair.frozen = false;
      pair.client.resume();
      pair.upstream.resume();
    }
  }

  killExisting(): void {
    for (const pair of [...this.pairs]) this.drop(pair);
  }

  refuseNew(mode: RefuseMode): void {
    this.refuse = mode;
  }

  dropNextReply(options: DropReplyOptions = {}): Promise<DroppedReply | undefined> {
    if (this.armed) throw new Error('dropNextReply() is already armed');
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.armed = undefined;
        resolve(undefined);
      }, options.timeoutMs ?? DEFAULT_DROP_TIMEOUT_MS);
      timer.unref();
      this.armed = { match: options.match ?? (() => true), resolve, timer };
    });
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      live.delete(this);
      if (this.armed) {
        clearTimeout(this.armed.timer);
        this.armed.resolve(undefined);
        this.armed = undefined;
      }
      this.killExisting();
      this.server.close(() => resolve());
    });
    return this.closing;
  }

  private accept(client: Socket): void {
    this.acceptedCount++;
    client.unref();
    client.on('error', () => undefined);
    if (this.closing || this.refuse === 'close') {
      client.destroy();
      return;
    }
    if (this.refuse === 'hang') {
      client.pause();
      const pair: Pair = { client, frozen: true };
      this.pairs.add(pair);
      client.once('close', () => this.pairs.delete(pair));
      return;
    }
    const upstream = connect({ host: HOST, port: this.targetPort });
    upstream.unref();
    upstream.on('error', () => undefined);
    const pair: Pair = { client, upstream, frozen: false };
    this.pairs.add(pair);
    if (this.frozenForNew) this.freeze(pair);
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => {
      const armed = this.armed;
      if (armed && armed.match(chunk)) {
        this.armed = undefined;
        clearTimeout(armed.timer);
        this.drop(pair);
        armed.resolve({ bytes: chunk.length, preview: chunk.subarray(0, 80).toString('latin1'), at: Date.now() });
        return;
      }
      client.write(chunk);
    });
    const end = () => this.drop(pair);
    client.once('close', end);
    upstream.once('close', end);
  }

  /** Stops reading both sides: nothing is forwarded, and the peers' writes pile up in kernel buffers. */
  private freeze(pair: Pair): void {
    pair.frozen = true;
    pair.client.pause();
    pair.upstream?.pause();
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream?.destroy();
  }
}
