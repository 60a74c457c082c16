import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';

import { pingRedis, startRedis, stopAll } from './redis-server.js';

describe('startRedis', () => {
  const clients: Redis[] = [];

  /** A client that fails at once instead of queueing or reconnecting while the server is down. */
  async function connected(url: string): Promise<Redis> {
    const redis = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    redis.on('error', () => undefined); // Expected once the server is killed.
    clients.push(redis);
    await redis.connect();
    return redis;
  }

  afterEach(async () => {
    // Skip ended clients: ioredis 6's disconnect() on one arms a 2 s timer for a 'close' that already happened.
    const open = clients.splice(0).filter((redis) => redis.status !== 'end');
    await Promise.all(
      open.map(async (redis) => {
        if (redis.status === 'ready') await redis.quit();
        else redis.disconnect();
      }),
    );
  });
  afterAll(() => stopAll());

  it('starts a server on a free loopback port that answers PING, and stops it', async () => {
    const server = await startRedis();

    expect(server.host).toBe('127.0.0.1');
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    await expect((await connected(server.url)).ping()).resolves.toBe('PONG');

    await server.stop();
    await expect(pingRedis(server.host, server.port)).resolves.toBe(false);
  });

  it('fails commands once killed, and works again after a restart on the same port', async () => {
    const server = await startRedis();
    const { port, pid } = server;
    const before = await connected(server.url);
    await expect(before.ping()).resolves.toBe('PONG');

    await server.kill();

    await expect(before.ping()).rejects.toThrow();
    await expect(pingRedis(server.host, port)).resolves.toBe(false);

    await server.restart();

    expect(server.port).toBe(port);
    expect(server.pid).not.toBe(pid);
    await expect((await connected(server.url)).ping()).resolves.toBe('PONG');
  });

  it('without persist: no data directory, and a restart starts empty', async () => {
    const server = await startRedis();
    expect(server.dir).toBeUndefined();
    await (await connected(server.url)).set('k', 'v');
    await server.kill();
    await server.restart();
    await expect((await connected(server.url)).get('k')).resolves.toBeNull();
  });

  it('with persist: SAVE survives a SIGKILL, later writes do not, and stop() removes the directory', async () => {
    const server = await startRedis({ persist: true });
    const dir = server.dir!;
    expect(existsSync(dir)).toBe(true);
    const before = await connected(server.url);
    await before.set('k', 'saved');
    await before.save();
    await before.set('k', 'after-save');
    await before.set('other', 'after-save');

    await server.kill();
    expect(existsSync(join(dir, 'dump.rdb'))).toBe(true);
    await server.restart();

    expect(server.dir).toBe(dir);
    const after = await connected(server.url);
    await expect(after.get('k')).resolves.toBe('saved');
    await expect(after.get('other')).resolves.toBeNull();

    await server.stop();
    expect(existsSync(dir)).toBe(false);
    expect(server.dir).toBeUndefined();
  });

  it('with persist: a SIGTERM restart saves nothing (no save points)', async () => {
    const server = await startRedis({ persist: true });
    await (await connected(server.url)).set('k', 'v');
    await server.restart();
    await expect((await connected(server.url)).get('k')).resolves.toBeNull();
    await server.stop();
  });
});
