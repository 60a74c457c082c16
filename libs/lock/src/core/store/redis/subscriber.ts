import type { Cluster, Redis } from 'ioredis';
import type { StoreListener } from '../store.js';
import { WatcherRegistry, parseMessage } from '../watchers.js';
import type { KeyLayout } from './key-layout.js';
import type { RedisConnection } from './redis-node.js';

/** Settings of a {@link Subscriber}. @internal */
export interface SubscriberOptions {
  /** The command connection; the subscriber is a duplicate of it, opened on the first wait. */
  readonly client: RedisConnection;
  readonly layout: KeyLayout;
  /** Sharded pub/sub (SSUBSCRIBE, for a Cluster whose scripts SPUBLISH); may change with {@link Subscriber.unshard} before the first wait. */
  readonly sharded: boolean;
  /** How long a channel stays subscribed after its last waiter left. */
  readonly lingerMs: number;
}

/**
 * The notifications of one store: one subscriber connection (a Cluster client with one connection per
 * shard when sharded), opened on the first wait and shared by every waiter of the process; a channel
 * stays subscribed `lingerMs` after its last waiter left, so a hot key does not resubscribe per wait.
 * Messages sent while the connection was down are lost: on a reconnect, every waiter is woken to retry.
 * @internal
 */
export class Subscriber {
  private readonly watchers = new WatcherRegistry();
  private connection?: RedisConnection;
  /** channel -> pending or done SUBSCRIBE */
  private readonly subscribed = new Map<string, Promise<unknown>>();
  private readonly lingering = new Map<string, NodeJS.Timeout>();
  /** Channels whose SUBSCRIBE has been acknowledged. */
  private readonly live = new Set<string>();
  /**
   * ioredis adds a client's own `keyPrefix` to script KEYS but not to channel names; the scripts
   * publish on "<prefixed lock key>:c", so the subscriptions must carry that prefix too.
   */
  private readonly channelPrefix: string;
  private closed = false;
  private error?: unknown;
  private sharded: boolean;

  constructor(private readonly options: SubscriberOptions) {
    this.sharded = options.sharded;
    // A Cluster client applies its own keyPrefix (not its redisOptions' one) to the scripts' KEYS.
    const client = options.client as { options?: { keyPrefix?: string } };
    this.channelPrefix = client.options?.keyPrefix ?? '';
  }

  /** Plain pub/sub after all (the servers have no SSUBSCRIBE/SPUBLISH): only before the first wait. */
  unshard(): void {
    if (this.connection) throw new Error('the subscriber is already open');
    this.sharded = false;
  }

  /** The last error of the subscriber connection, if it has not been ready since. */
  lastError(): unknown {
    return this.error;
  }

  /** The subscriber connection, once opened (replaced together with the command connection). */
  get current(): RedisConnection | undefined {
    return this.connection;
  }

  async watch(keys: readonly string[], token: string, listener: StoreListener): Promise<() => void> {
    if (this.closed) throw new Error('the lock store is closed');
    this.watchers.add(keys, token, listener);
    const stop = () => {
      for (const key of this.watchers.remove(keys, token)) this.linger(this.channel(key));
    };
    try {
      await Promise.all(
        keys.map((key) => {
          const channel = this.channel(key);
          const timer = this.lingering.get(channel);
          if (timer) {
            clearTimeout(timer);
            this.lingering.delete(channel);
          }
          return this.subscribe(channel);
        }),
      );
    } catch (error) {
      stop();
      throw error;
    }
    return stop;
  }

  listening(keys: readonly string[]): boolean {
    return keys.every((key) => this.live.has(this.channel(key)));
  }

  /** Wakes every waiter (messages may have been lost). */
  wakeAll(): void {
    this.watchers.wakeAll();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.lingering.values()) clearTimeout(timer);
    this.lingering.clear();
    this.subscribed.clear();
    this.live.clear();
    this.watchers.wakeAll();
    const connection = this.connection;
    this.connection = undefined;
    connection?.disconnect();
  }

  private subscribe(channel: string): Promise<unknown> {
    const existing = this.subscribed.get(channel);
    if (existing) return existing;
    const connection = this.open();
    const pending = (this.sharded ? (connection as Cluster).ssubscribe(this.unprefixed(channel)) : connection.subscribe(channel))
      .then(() => this.live.add(channel))
      .catch((error: unknown) => {
        this.subscribed.delete(channel);
        throw error;
      });
    this.subscribed.set(channel, pending);
    return pending;
  }

  /** Unsubscribes a channel once it has had no waiter for lingerMs. */
  private linger(channel: string): void {
    if (this.closed || this.lingering.has(channel)) return;
    const timer = setTimeout(() => {
      this.lingering.delete(channel);
      const key = this.keyOfChannel(channel);
      if (key !== undefined && this.watchers.has(key)) return;
      this.subscribed.delete(channel);
      this.live.delete(channel);
      const connection = this.connection;
      if (!connection) return;
      (this.sharded ? (connection as Cluster).sunsubscribe(this.unprefixed(channel)) : connection.unsubscribe(channel)).catch(
        () => undefined,
      );
    }, this.options.lingerMs);
    timer.unref();
    this.lingering.set(channel, timer);
  }

  private open(): RedisConnection {
    if (this.connection) return this.connection;
    if (this.closed) throw new Error('the lock store is closed');
    const client = this.options.client;
    const connection: RedisConnection = this.sharded
      ? (client as Cluster).duplicate([], { shardedSubscribers: true } as never)
      : (client as Redis).duplicate();
    const onMessage = (channel: string, message: string) => {
      const key = this.keyOfChannel(channel);
      const event = parseMessage(message);
      if (key !== undefined && event) this.watchers.dispatch(key, event);
    };
    connection.on(this.sharded ? 'smessage' : 'message', onMessage);
    // Messages published while a connection was down are lost: on a reconnect, every waiter retries.
    let connectedBefore = false;
    connection.on('ready', () => {
      this.error = undefined;
      if (connectedBefore) this.watchers.wakeAll();
      connectedBefore = true;
    });
    // A Cluster's subscriber moves to another node when its node fails (and, sharded, follows a
    // slot that moved): messages may have been lost meanwhile.
    for (const event of ['-node', '+subscriber', '-subscriber']) connection.on(event, () => this.watchers.wakeAll());
    connection.on('error', (error: unknown) => {
      this.error = error;
    });
    this.connection = connection;
    return connection;
  }

  /**
   * A channel as given to SSUBSCRIBE/SUNSUBSCRIBE: ioredis treats their channels as keys (they route
   * by slot) and adds the client's keyPrefix itself, as it does not to SUBSCRIBE's.
   */
  private unprefixed(channel: string): string {
    return channel.slice(this.channelPrefix.length);
  }

  private channel(key: string): string {
    return this.channelPrefix + this.options.layout.channel(key);
  }

  private keyOfChannel(channel: string): string | undefined {
    if (!channel.startsWith(this.channelPrefix)) return undefined;
    return this.options.layout.keyOfChannel(channel.slice(this.channelPrefix.length));
  }
}
