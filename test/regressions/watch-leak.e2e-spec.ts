/**
 * Found in review (now fixed; this test failed before the fix): takeOnce() bounds store.watch() by the acquisition's end; when the SUBSCRIBE answers later than that
 * (subscriber connection hanging or reconnecting), the bounded promise has already rejected, so the
 * stop function store.watch() finally resolves with is dropped: the waiter's listener stays in the
 * store's registry for ever and the channel is never unsubscribed (one leaked closure per such wait).
 */
import { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockClient, RedisLockStore } from 'nestjs-redis-lock';
import { startRedis, type RedisServerHandle } from '../helpers/redis-server.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { engine, prefix, type Engine } from './regression-utils.js';
import { waitFor } from '../fixtures/lock-e2e-utils.js';

describe('regression: a SUBSCRIBE that answers after the acquisition ended', () => {
  let server: RedisServerHandle;
  let proxy: TcpProxy;
  const engines: Engine[] = [];
  let lc: LockClient | undefined;

  beforeAll(async () => {
    server = await startRedis();
    proxy = await startTcpProxy({ targetPort: server.port });
  });
  afterAll(async () => {
    await lc?.close();
    for (const e of engines) await e.lc.close();
    await proxy.close();
    await server.stop();
  });

  it('leaves no watcher registered once the wait is over', async () => {
    const keyPrefix = prefix('watch');
    const holder = engine(server.url, keyPrefix);
    engines.push(holder);
    const key = 'acct:5';
    await holder.lc.acquire(key, { ttl: 20_000 });

    const redis = new Redis(proxy.url);
    redis.on('error', () => undefined);
    const store = new RedisLockStore({ client: redis, keyPrefix, ownsClient: true, lingerMs: 200 });
    lc = new LockClient({ store, ownsStore: true, ttl: 5_000, wait: 300, autoExtend: false, onLockLost: 'continue', connectTimeout: 200 });
    expect(await lc.isLocked(key)).toBe(true); // command connection ready

    proxy.refuseNew('hang'); // the subscriber connection (opened on the first wait) hangs
    const outcome = await lc.acquire(key, { wait: 300 }).then(
      () => 'acquired',
      (e: unknown) => (e as Error).name,
    );
    expect(outcome).not.toBe('acquired'); // the key is held elsewhere: the wait times out
    await sleep(400); // past wait + connectTimeout: the bound of watch() has fired
    proxy.refuseNew(false);
    proxy.killExisting(); // the subscriber reconnects; its queued SUBSCRIBE now succeeds
    await waitFor('the late SUBSCRIBE to go through', async () => store.listening([key]), 5_000, 20).catch(() => undefined);
    await sleep(600); // > lingerMs
    const registry = (store as unknown as { subscriber: { watchers: { has(k: string): boolean } } }).subscriber.watchers;
    expect(registry.has(key)).toBe(false);
  }, 20_000);
});
