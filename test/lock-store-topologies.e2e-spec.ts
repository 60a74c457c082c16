/**
 * The behavioural suite every store runs (libs/lock/src/core/store/store.contract.ts) on a Redis
 * Cluster (3 masters + 3 replicas) and on a Redlock quorum of 3 independent servers, all started here.
 * One server and memory run it in core/lock-client.spec.ts.
 */
import { Cluster, Redis } from 'ioredis';
import { QuorumLockStore } from '../libs/lock/src/core/store/redlock/quorum-store.js';
import { RedisLockStore } from '../libs/lock/src/core/store/redis/redis-store.js';
import { describeLockStore, type StoreFixture } from '../libs/lock/src/core/store/store.contract.js';
import { withoutCounters } from './helpers/lock-keys.js';
import { startRedis, stopAll } from './helpers/redis-server.js';
import { startCluster, stopAllTopologies } from './helpers/redis-topologies.js';

const cluster = await startCluster();
const nodes = await Promise.all([startRedis(), startRedis(), startRedis()]);

afterAll(async () => {
  await stopAllTopologies();
  await stopAll();
});

/** Every key under `prefix` on the given servers but the fencing counters. */
async function leftoversOn(urls: readonly string[], prefix: string): Promise<string[]> {
  const found: string[] = [];
  for (const url of urls) {
    const admin = new Redis(url);
    try {
      const role = (await admin.role()) as unknown[];
      if (role[0] === 'master') found.push(...(await admin.keys(`${prefix}*`)));
    } finally {
      admin.disconnect();
    }
  }
  return withoutCounters(found);
}

const clusterFixture = (): StoreFixture => {
  const stores: RedisLockStore[] = [];
  return {
    make(prefix) {
      const client = new Cluster([...cluster.seeds]);
      const store = new RedisLockStore({ client, ownsClient: true, keyPrefix: prefix });
      stores.push(store);
      return store;
    },
    leftovers: (prefix) => leftoversOn(cluster.urls, prefix),
    async close() {
      await Promise.all(stores.map((s) => s.close()));
    },
  };
};

const quorumFixture = (): StoreFixture => {
  const stores: QuorumLockStore[] = [];
  return {
    make(prefix) {
      const store = new QuorumLockStore({
        nodes: nodes.map(
          (node) => new RedisLockStore({ client: new Redis(node.url), ownsClient: true, keyPrefix: prefix, announceReleases: true }),
        ),
      });
      stores.push(store);
      return store;
    },
    leftovers: (prefix) =>
      leftoversOn(
        nodes.map((n) => n.url),
        prefix,
      ),
    async close() {
      await Promise.all(stores.map((s) => s.close()));
    },
  };
};

describeLockStore('cluster', clusterFixture);
describeLockStore('redlock-3', quorumFixture, { queue: false });
