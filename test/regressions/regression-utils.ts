/** Helpers for the regression tests found in review: engines on a private redis-server, bounded waits. */
import { Redis, type RedisOptions } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { LockClient, RedisLockStore } from 'nestjs-redis-lock';
import { startRedis, type RedisServerHandle } from '../helpers/redis-server.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

export const prefix = (tag: string): string => `review-${tag}-${randomBytes(3).toString('hex')}:`;

export interface Engine {
  readonly lc: LockClient;
  readonly redis: Redis;
  readonly store: RedisLockStore;
}

/** A LockClient on its own ioredis connection to `url`. */
export function engine(
  url: string,
  keyPrefix: string,
  opts: { redis?: RedisOptions; connectTimeout?: number; ownsClient?: boolean; ttl?: number; wait?: number } = {},
): Engine {
  const redis = new Redis(url, { maxRetriesPerRequest: 20, ...opts.redis });
  redis.on('error', () => undefined);
  const store = new RedisLockStore({ client: redis, keyPrefix, ownsClient: opts.ownsClient ?? true });
  const lc = new LockClient({
    store,
    ownsStore: true,
    ttl: opts.ttl ?? 10_000,
    wait: opts.wait ?? 5_000,
    autoExtend: false,
    onLockLost: 'continue',
    connectTimeout: opts.connectTimeout ?? 2_000,
  });
  return { lc, redis, store };
}

/** Tracks whether a promise settled, and how. */
export function track<T>(p: Promise<T>): { settled: () => boolean; value?: T; error?: unknown; done: Promise<void> } {
  const s: { settled: () => boolean; value?: T; error?: unknown; done: Promise<void> } = { settled: () => false, done: Promise.resolve() };
  let settled = false;
  s.settled = () => settled;
  s.done = p.then(
    (v) => {
      settled = true;
      s.value = v;
    },
    (e: unknown) => {
      settled = true;
      s.error = e;
    },
  );
  return s;
}

/** A private redis-server with a TCP proxy in front, for one describe block; engines pushed are closed after it. */
export interface ProxiedServer {
  readonly server: RedisServerHandle;
  readonly proxy: TcpProxy;
  readonly engines: Engine[];
}

/** Starts the server and the proxy in beforeAll and stops them (and the engines) in afterAll. */
export function proxiedServer(): ProxiedServer {
  const state = { engines: [] as Engine[] } as { server: RedisServerHandle; proxy: TcpProxy; engines: Engine[] };
  beforeAll(async () => {
    state.server = await startRedis();
    state.proxy = await startTcpProxy({ targetPort: state.server.port });
  });
  afterAll(async () => {
    state.proxy.blackhole(false);
    for (const e of state.engines) {
      await e.lc.close();
      e.redis.disconnect();
    }
    await state.proxy.close();
    await state.server.stop();
  });
  return state;
}
