/**
 * The behavioural suite (store/store.contract.ts) on the in-memory store and on one Redis server
 * (REDIS_URL, set by `npm test`).
 */
import { Redis } from 'ioredis';
import { MemoryLockStore } from './store/memory/memory-store.js';
import { RedisLockStore } from './store/redis/redis-store.js';
import { describeLockStore, type StoreFixture } from './store/store.contract.js';
import type { LockStore } from './store/store.js';

const redisFixture = (): StoreFixture => {
  const admin = new Redis(process.env.REDIS_URL!);
  const stores: LockStore[] = [];
  return {
    make(prefix) {
      const store = new RedisLockStore({ client: new Redis(process.env.REDIS_URL!), ownsClient: true, keyPrefix: prefix });
      stores.push(store);
      return store;
    },
    async leftovers(prefix) {
      // Every key but the slots' fencing counters (bounded: one per slot used).
      return (await admin.keys(`${prefix}*`)).filter((key) => !key.endsWith('}:f'));
    },
    async close() {
      await Promise.all(stores.map((s) => s.close()));
      await admin.quit();
    },
  };
};

const memoryFixture = (): StoreFixture => {
  const stores = new Map<string, MemoryLockStore>();
  return {
    make(prefix) {
      // One memory store per prefix: two clients on the same prefix share it, like two processes share Redis.
      let store = stores.get(prefix);
      if (!store) stores.set(prefix, (store = new MemoryLockStore()));
      return store;
    },
    async leftovers(prefix) {
      const store = stores.get(prefix);
      return store && store.size > 0 ? [`${store.size} held`] : [];
    },
    async close() {},
  };
};

describeLockStore('redis', redisFixture);
describeLockStore('memory', memoryFixture);
