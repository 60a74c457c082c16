import { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import { settle } from '../fixtures/lock-e2e-utils.js';
import { startRedis, type RedisServerHandle } from './redis-server.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

describe('startTcpProxy', () => {
  let server: RedisServerHandle;
  let proxy: TcpProxy;
  const clients: Redis[] = [];

  /** A client through the proxy; `commandTimeout` so a frozen path fails a command instead of hanging it. */
  async function client(options: { commandTimeout?: number } = {}): Promise<Redis> {
    const redis = new Redis(proxy.url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 500, ...options });
    redis.on('error', () => undefined);
    clients.push(redis);
    await redis.connect();
    return redis;
  }

  beforeAll(async () => {
    server = await startRedis();
  });
  beforeEach(async () => {
    proxy = await startTcpProxy({ targetPort: server.port });
  });
  afterEach(async () => {
    // Skip ended clients: ioredis 6's disconnect() on one arms a 2 s timer for a 'close' that already happened.
    for (const redis of clients.splice(0)) if (redis.status !== 'end') redis.disconnect();
    await proxy.close();
  });
  afterAll(() => server.stop());

  it('forwards, and a black hole freezes every connection until it is lifted', async () => {
    const redis = await client();
    await expect(redis.ping()).resolves.toBe('PONG');
    expect(proxy.port).not.toBe(server.port);
    expect(proxy.connections).toBe(1);

    proxy.blackhole(true);
    const pending = redis.ping();
    await sleep(300);
    expect(redis.status).toBe('ready'); // still looks connected
    proxy.blackhole(false);
    const thawed = await settle(pending, 2_000);
    expect(thawed.value).toBe('PONG');
  });

  it("blackhole(true, 'existing') freezes only the connections open now", async () => {
    const old = await client({ commandTimeout: 300 });
    proxy.blackhole(true, 'existing');
    await expect(old.ping()).rejects.toThrow(/timed out/i);
    const fresh = await client();
    await expect(fresh.ping()).resolves.toBe('PONG');
  });

  it('killExisting() cuts open connections; the client reconnects through the same proxy', async () => {
    const redis = await client();
    await redis.set('proxy:k', '1');
    const before = proxy.accepted;
    proxy.killExisting();
    const after = await settle(redis.get('proxy:k'), 5_000);
    expect(after.value).toBe('1');
    expect(proxy.accepted).toBeGreaterThan(before);
  });

  it("refuseNew('hang') accepts the TCP connection and never answers; 'close' closes it; false lets it through", async () => {
    proxy.refuseNew('hang');
    const hanging = new Redis(proxy.url, { lazyConnect: true, connectTimeout: 300, maxRetriesPerRequest: 0, retryStrategy: () => null });
    hanging.on('error', () => undefined);
    clients.push(hanging);
    // ioredis' connectTimeout covers the TCP handshake only, which the proxy completes: the ready check then waits forever.
    await expect(settle(hanging.connect(), 1_000)).rejects.toThrow(/still pending/);
    expect(hanging.status).toBe('connect');

    proxy.refuseNew('close');
    const refused = new Redis(proxy.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    refused.on('error', () => undefined);
    clients.push(refused);
    expect((await settle(refused.connect(), 5_000)).error).toBeInstanceOf(Error);

    proxy.refuseNew(false);
    await expect((await client()).ping()).resolves.toBe('PONG');
  });

  it('dropNextReply() swallows one reply and cuts that connection: ioredis re-sends the command, which runs twice', async () => {
    const redis = await client();
    await redis.del('proxy:n');
    const dropped = proxy.dropNextReply();
    const reply = await settle(redis.incr('proxy:n'), 5_000);
    expect((await dropped)?.preview).toMatch(/^:1\r\n/);
    // The reply the client finally saw is the second execution's.
    expect(reply.value).toBe(2);
  });
});
