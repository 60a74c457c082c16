import { setTimeout as delay } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';

import { pingRedis, stopAll } from './redis-server.js';
import { clusterKeySlot, startCluster, startSentinel, stopAllTopologies } from './redis-topologies.js';

/** A plain client that fails at once instead of queueing or reconnecting. */
function direct(port: number): Redis {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  return redis;
}

/**
 * disconnect(), not quit(): quit() leaves the sentinel connections of ioredis' failoverDetector open. Bounded
 * wait for 'end' (ioredis 6's disconnect() of an already closed stream waits 2 s for a 'close' that is over).
 */
async function close(client: Redis | Cluster): Promise<void> {
  if (client.status === 'end') return;
  const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
  client.disconnect();
  const ac = new AbortController();
  await Promise.race([ended, delay(2_500, undefined, { signal: ac.signal }).catch(() => undefined)]);
  ac.abort();
}

describe('clusterKeySlot', () => {
  it('computes CLUSTER KEYSLOT, hash tags included', () => {
    // Known values (the Redis Cluster spec's CRC16 check value is 0x31C3 for "123456789").
    expect(clusterKeySlot('foo')).toBe(12182);
    expect(clusterKeySlot('123456789')).toBe(12739);
    expect(clusterKeySlot('{user1000}.following')).toBe(clusterKeySlot('user1000'));
    expect(clusterKeySlot('')).toBe(0);
  });
});

describe('startCluster', () => {
  const clients: (Redis | Cluster)[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map(close));
  });
  afterAll(async () => {
    await stopAllTopologies();
    await stopAll();
  });

  it('serves keys through a cluster client, survives the SIGKILL of a key master, and stops', async () => {
    const cluster = await startCluster({ masters: 3, replicasPerMaster: 1 });
    expect(cluster.nodes).toHaveLength(6);
    expect(await cluster.masters()).toHaveLength(3);
    expect(await cluster.replicas()).toHaveLength(3);

    const key = 'topology:key';
    const master = await cluster.masterOf(key);
    expect(await cluster.masterOf(clusterKeySlot(key))).toBe(master);
    const node = direct(master.port);
    clients.push(node);
    await node.connect();
    for (const name of [key, 'foo{}{bar}', 'foo{{bar}}zap', '{user1000}.following', 'clé']) {
      expect([name, await node.call('CLUSTER', 'KEYSLOT', name)]).toEqual([name, clusterKeySlot(name)]);
    }
    await node.set(key, 'v1');
    expect(await node.wait(1, 2_000)).toBe(1); // on the replica before the crash

    const client = new Cluster([...cluster.seeds], { clusterRetryStrategy: (times) => (times > 20 ? null : 100) });
    client.on('error', () => undefined);
    clients.push(client);
    expect(await client.get(key)).toBe('v1');

    const promoted = await cluster.failover(master);
    expect(promoted).not.toBe(master);
    expect(await pingRedis(master.host, master.port)).toBe(false);
    expect(await cluster.masterOf(key)).toBe(promoted);
    expect(await cluster.masters()).toContain(promoted);
    expect(await cluster.masters()).not.toContain(master);
    expect(await client.get(key)).toBe('v1');
    await client.set(key, 'v2');
    expect(await client.get(key)).toBe('v2');

    // Clients first: one left reconnecting to stopped nodes would keep a timer of ioredis' alive.
    await Promise.all(clients.splice(0).map(close));
    await cluster.stop();
    const up = await Promise.all(cluster.nodes.map((server) => pingRedis(server.host, server.port)));
    expect(up.every((answered) => !answered)).toBe(true);
    expect(cluster.nodes.every((server) => server.dir === undefined)).toBe(true);
  }, 45_000);
});

describe('startSentinel', () => {
  const clients: Redis[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map(close));
  });
  afterAll(async () => {
    await stopAllTopologies();
    await stopAll();
  });

  it('reports the master, fails over on request and on a crash, and stops', async () => {
    const set = await startSentinel({ replicas: 2, sentinels: 3 });
    expect(set.servers).toHaveLength(3);
    expect(set.sentinels).toHaveLength(3);
    expect(set.sentinelServers.map(({ host, port }) => ({ host, port }))).toEqual(set.sentinels);
    const old = await set.master();
    expect(old).toBe(set.servers[0]);

    // failoverDetector: follow +switch-master at once (the old master stays a master for some 10 s).
    const client = new Redis({ sentinels: [...set.sentinels], name: set.name, failoverDetector: true });
    client.on('error', () => undefined);
    clients.push(client);
    await client.set('k', 'v');
    expect(await client.wait(2, 2_000)).toBe(2);

    const promoted = await set.failover();
    expect(promoted).not.toBe(old);
    expect(await set.master()).toBe(promoted);
    const onPromoted = direct(promoted.port);
    clients.push(onPromoted);
    await onPromoted.connect();
    expect((await onPromoted.role())[0]).toBe('master');
    expect(await onPromoted.get('k')).toBe('v');

    // The sentinel client moves to the new master: bounded, 50 tries 100 ms apart.
    let written: string | undefined;
    for (let attempt = 0; attempt < 50 && written === undefined; attempt++) {
      await client.set('k', `try-${attempt}`).catch(() => undefined);
      if ((await onPromoted.get('k')) === `try-${attempt}`) written = `try-${attempt}`;
      else await delay(100);
    }
    expect(written).toBeDefined();
    expect(await onPromoted.wait(1, 2_000)).toBe(1); // on the replica that the crash will promote

    // A plain sentinel client for the crash: the failoverDetector, on a +switch-master that follows the crash of
    // its master, disconnects a stream that is closed already, and ioredis then holds a 2 s timer.
    await close(client);
    const crashClient = new Redis({ sentinels: [...set.sentinels], name: set.name });
    crashClient.on('error', () => undefined);
    clients.push(crashClient);
    expect(await crashClient.get('k')).toBe(written);

    const survivor = await set.killMaster();
    expect([old, promoted]).not.toContain(survivor);
    expect(await pingRedis(promoted.host, promoted.port)).toBe(false);
    expect(await set.master()).toBe(survivor);
    // And after the crash: the client reconnects through the sentinels (ioredis retries a queued command up to 20 times).
    expect(await crashClient.get('k')).toBe(written);
    expect(crashClient.status).toBe('ready');

    await Promise.all(clients.splice(0).map(close));
    await set.stop();
    const up = await Promise.all([...set.servers, ...set.sentinelServers].map((server) => pingRedis(server.host, server.port)));
    expect(up.every((answered) => !answered)).toBe(true);
  }, 45_000);
});
