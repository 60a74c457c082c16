import type { Redis } from 'ioredis';
import { LockStoreError } from './errors.js';
import { monotonic } from './clock.js';
import { settlesWithin } from './deadlines.js';
import { KeyLayout } from './keys.js';
import { checkRedisAccess } from './redis-access.js';
import { SCRIPTS, type Script } from './scripts.js';
import type { AcquireRequest, AcquireResult, InspectResult, LockStore, ReleaseOutcome, StoreListener } from './store.js';
import { queueMember } from './token.js';
import { WatcherRegistry, parseMessage } from './watchers.js';

/** Settings of a {@link RedisLockStore}. */
export interface RedisLockStoreOptions {
  /** The connection for commands. */
  readonly client: Redis;
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
}

type Reply = [number, string | number, (string | number)?, (number | null)?];

/** How many HANDOFF calls one release may make to drop dead queue entries (each drops up to ~200, in well under 1 ms). */
const MAX_HANDOFF_ROUNDS = 250;

/**
 * The store on one Redis server (or a primary with replicas through Sentinel): every operation is one
 * Lua script, so it is one round trip and atomic. Waiters are notified on one subscriber connection
 * per store, opened on the first wait, shared by every waiter of the process.
 */
export class RedisLockStore implements LockStore {
  /** @internal */
  readonly layout: KeyLayout;
  /**
   * ioredis adds a client's own `keyPrefix` to script KEYS but not to channel names; the scripts
   * publish on "<prefixed lock key>:c", so the subscriptions must carry that prefix too.
   */
  private readonly channelPrefix: string;
  private readonly client: Redis;
  private readonly ownsClient: boolean;
  private readonly lingerMs: number;
  private readonly probeMs: number;
  private readonly watchers = new WatcherRegistry();
  private subscriber?: Redis;
  /** channel -> pending or done SUBSCRIBE */
  private readonly subscribed = new Map<string, Promise<unknown>>();
  private readonly lingering = new Map<string, NodeJS.Timeout>();
  /** Channels whose SUBSCRIBE has been acknowledged. */
  private readonly live = new Set<string>();
  private closed = false;
  private probing = false;
  private readonly connectionError?: () => unknown;
  private subscriberError?: unknown;

  constructor(options: RedisLockStoreOptions) {
    this.client = options.client;
    this.ownsClient = options.ownsClient ?? false;
    this.layout = new KeyLayout(options.keyPrefix);
    this.channelPrefix = this.client.options?.keyPrefix ?? '';
    this.lingerMs = options.lingerMs ?? 5000;
    this.probeMs = options.probeMs ?? 1000;
    this.connectionError = options.lastError;
    // Listening to these does not change what ioredis logs (only an 'error' listener would).
    this.client.on?.('connect', this.onConnect);
    this.client.on?.('ready', this.onReady);
    this.client.on?.('close', this.onClose);
  }

  private handshakeSince?: number;
  /** Connection closes seen: a command on its way across one may be re-sent by ioredis. */
  private closes = 0;
  private readonly onClose = (): void => {
    this.closes++;
  };
  private readonly onConnect = (): void => {
    this.handshakeSince = monotonic();
  };
  private readonly onReady = (): void => {
    this.handshakeSince = undefined;
  };

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const { keys, token, ttl, queueFor } = request;
    const queued = queueFor !== undefined;
    let reply: Reply;
    if (keys.length > 1) {
      const member = queued ? queueMember(token, ttl, queueFor, true) : '';
      reply = (await this.run(SCRIPTS.acquireMany, this.manyKeys(keys), [token, ttl, queued ? 1 : 0, member, queueFor ?? 0])) as Reply;
    } else {
      const lock = this.layout.lock(keys[0]!);
      const one = [lock, `${lock}:q`];
      reply = (
        queued
          ? await this.run(SCRIPTS.acquireQueued, one, [token, ttl, queueMember(token, ttl, queueFor, false), queueFor])
          : await this.run(SCRIPTS.acquirePlain, one, [token, ttl])
      ) as Reply;
    }
    if (Number(reply[0]) === 1) {
      const fence = Number(reply[1]);
      const fences = keys.length === 1 ? [fence] : keys.map(() => fence);
      return reply[2] === undefined || reply[2] === null
        ? { acquired: true, fences }
        : { acquired: true, fences, remaining: Number(reply[2]) };
    }
    const pttl = Number(reply[1]);
    const fence = reply[2] === undefined || reply[2] === null || Number(reply[2]) < 0 ? undefined : Number(reply[2]);
    const rank = reply[3] === undefined || reply[3] === null ? undefined : Number(reply[3]);
    return { acquired: false, pttl, fence, rank };
  }

  async release(keys: readonly string[], token: string): Promise<ReleaseOutcome> {
    const epoch = this.closes;
    const reply = Number(await this.run(SCRIPTS.release, this.manyKeys(keys), [token]));
    if (reply & 2) await this.finishHandoffs(keys);
    if ((reply & 1) === 1 && (reply & 4) === 0) return 'released';
    // Gone or taken. Without a reconnect meanwhile this is the only run of the command: not ours.
    return this.closes === epoch ? 'not-ours' : 'unsure';
  }

  async extend(keys: readonly string[], token: string, ttl: number): Promise<boolean> {
    const reply = await this.run(
      SCRIPTS.extend,
      keys.map((k) => this.layout.lock(k)),
      [token, ttl],
    );
    return Number(reply) === 1;
  }

  async inspect(key: string, token: string): Promise<InspectResult> {
    const reply = (await this.run(SCRIPTS.inspect, [this.layout.lock(key)], [token])) as Reply;
    if (Number(reply[0]) !== 1) return { held: false };
    return { held: true, fence: Number(reply[1]), pttl: Number(reply[2]) };
  }

  async isLocked(key: string): Promise<boolean> {
    return Number(await this.run(SCRIPTS.isLocked, [this.layout.lock(key)], [])) === 1;
  }

  async forceRelease(key: string): Promise<boolean> {
    const lock = this.layout.lock(key);
    const holder = await this.run(SCRIPTS.holder, [lock], []);
    if (typeof holder !== 'string') return false;
    const reply = Number(await this.run(SCRIPTS.forceRelease, [lock, this.layout.queue(key)], [holder]));
    if (reply & 2) await this.finishHandoffs([key]);
    return (reply & 1) === 1;
  }

  async leave(request: AcquireRequest): Promise<boolean> {
    const { keys, token, ttl, queueFor } = request;
    const member = queueMember(token, ttl, queueFor ?? 0, keys.length > 1);
    const reply = Number(await this.run(SCRIPTS.leave, this.manyKeys(keys), [token, member]));
    if (reply & 2) await this.finishHandoffs(keys);
    return (reply & 1) === 1;
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

  /**
   * A call got no answer in time. If the connection does not answer a PING within probeMs either,
   * it is replaced (a frozen or half-open socket would otherwise keep the store dead): ioredis
   * reconnects and re-sends what was unanswered, which every script tolerates. One probe at a time.
   */
  suspect(): void {
    if (this.closed || this.probing) return;
    if (this.client.status === 'connect' && this.handshakeSince !== undefined && monotonic() - this.handshakeSince > this.probeMs) {
      // Connected, but the handshake (AUTH, SELECT, the ready check) never answered: ioredis has no
      // timeout for that stage, so start over.
      this.handshakeSince = monotonic();
      this.client.disconnect(true);
      this.subscriber?.disconnect(true);
      return;
    }
    if (this.client.status !== 'ready') return;
    this.probing = true;
    void settlesWithin(this.client.ping(), this.probeMs).then((answered) => {
      this.probing = false;
      if (answered || this.closed) return;
      this.client.disconnect(true);
      this.subscriber?.disconnect(true);
    });
  }

  /** Checks that the Redis user may run every script, key and channel command the store needs. */
  check(timeoutMs: number): Promise<void> {
    return checkRedisAccess(this.client, this.layout.prefix, { timeoutMs, lastError: () => this.lastError() });
  }

  lastError(): unknown {
    return this.connectionError?.() ?? this.subscriberError;
  }

  async close(timeoutMs?: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.lingering.values()) clearTimeout(timer);
    this.lingering.clear();
    this.subscribed.clear();
    this.live.clear();
    this.watchers.wakeAll();
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (subscriber) subscriber.disconnect();
    this.client.off?.('connect', this.onConnect);
    this.client.off?.('ready', this.onReady);
    this.client.off?.('close', this.onClose);
    if (this.ownsClient) await quit(this.client, timeoutMs);
  }

  /** Drops dead queue entries left by a hand-off that had too many to drop in one script. Bounded. */
  private async finishHandoffs(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      const pair = [this.layout.lock(key), this.layout.queue(key)];
      for (let round = 0; round < MAX_HANDOFF_ROUNDS; round++) {
        if (Number(await this.run(SCRIPTS.handoff, pair, [])) !== 3) break;
      }
    }
  }

  private subscribe(channel: string): Promise<unknown> {
    const existing = this.subscribed.get(channel);
    if (existing) return existing;
    const pending = this.sub()
      .subscribe(channel)
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
      this.subscriber?.unsubscribe(channel).catch(() => undefined);
    }, this.lingerMs);
    timer.unref();
    this.lingering.set(channel, timer);
  }

  private sub(): Redis {
    if (this.subscriber) return this.subscriber;
    if (this.closed) throw new Error('the lock store is closed');
    const subscriber = this.client.duplicate();
    subscriber.on('message', (channel: string, message: string) => {
      const key = this.keyOfChannel(channel);
      const event = parseMessage(message);
      if (key !== undefined && event) this.watchers.dispatch(key, event);
    });
    // Messages published while the connection was down are lost: on a reconnect, every waiter retries.
    let connectedBefore = false;
    subscriber.on('ready', () => {
      if (connectedBefore) this.watchers.wakeAll();
      connectedBefore = true;
    });
    subscriber.on('error', (error: unknown) => {
      this.subscriberError = error;
    });
    subscriber.on('ready', () => {
      this.subscriberError = undefined;
    });
    this.subscriber = subscriber;
    return subscriber;
  }

  private channel(key: string): string {
    return this.channelPrefix + this.layout.channel(key);
  }

  private keyOfChannel(channel: string): string | undefined {
    if (!channel.startsWith(this.channelPrefix)) return undefined;
    return this.layout.keyOfChannel(channel.slice(this.channelPrefix.length));
  }

  /** KEYS of the multi-key scripts: every lock key, then every queue key. */
  private manyKeys(keys: readonly string[]): string[] {
    const n = keys.length;
    const out = new Array<string>(2 * n);
    for (let i = 0; i < n; i++) {
      const lock = this.layout.lock(keys[i]!);
      out[i] = lock;
      out[n + i] = `${lock}:q`;
    }
    return out;
  }

  private run(script: Script, keys: string[], args: (string | number)[]): Promise<unknown> {
    // A database the server refused on connect (ioredis then stays in DB 0): never lock there.
    const refusal = this.connectionError?.();
    if (refusal instanceof LockStoreError) return Promise.reject(refusal);
    return this.client.evalsha(script.sha, keys.length, ...keys, ...args).catch((error: unknown) => {
      // First use on this server (or after SCRIPT FLUSH): EVAL also caches the script.
      if (error instanceof Error && error.message.startsWith('NOSCRIPT'))
        return this.client.eval(script.source, keys.length, ...keys, ...args);
      throw error;
    });
  }
}

/** QUIT, bounded: a server that does not answer gets its socket closed after `timeoutMs`. */
async function quit(client: Redis, timeoutMs = Infinity): Promise<void> {
  if (client.status === 'end') return;
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  await settlesWithin(client.quit(), Number.isFinite(timeoutMs) ? Math.max(1, timeoutMs) : 2 ** 31 - 1);
  if ((client.status as string) !== 'end') client.disconnect();
}
