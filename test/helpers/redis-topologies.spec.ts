import { Cluster, Redis } from 'ioredis';

import { pingRedis, stopAll } from './redis-server.js';
import { clusterKeySlot, startCluster, startSentinel, stopAllTopologies } from './redis-topologies.js';

/** A plain client that fails at once instead of queueing or reconnecting. */
function direct(port: number): Redis {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  return redis;
}

async function close(client: Redis | Cluster): Promise<void> {
  if (client.status === 'end') return;
  if (client.status === 'ready') await client.quit().catch(() => client.disconnect());
  else client.disconnect();
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

  it('reports the master, fails over to a replica on request, and stops', async () => {
    const set = await startSentinel({ replicas: 1, sentinels: 3 });
    expect(set.servers).toHaveLength(2);
    expect(set.sentinels).toHaveLength(3);
    const old = await set.master();
    expect(old).toBe(set.servers[0]);

    const client = new Redis({ sentinels: [...set.sentinels], name: set.name, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    clients.push(client);
    await client.set('k', 'v');
    expect(await client.wait(1, 2_000)).toBe(1);

    const promoted = await set.failover();
    expect(promoted).not.toBe(old);
    expect(await set.master()).toBe(promoted);
    const direct1 = direct(promoted.port);
    clients.push(direct1);
    await direct1.connect();
    expect((await direct1.role())[0]).toBe('master');
    expect(await direct1.get('k')).toBe('v');

    await set.stop();
    const up = await Promise.all([...set.servers, ...set.sentinelServers].map((server) => pingRedis(server.host, server.port)));
    expect(up.every((answered) => !answered)).toBe(true);
  }, 45_000);
});
