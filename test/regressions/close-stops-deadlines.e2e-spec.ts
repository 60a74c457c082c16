/**
 * Found in review: close() used to stop the shared deadline sweep while calls it did not wait for were
 * still pending, so their bounds never fired. With a client the store does not own (ownsClient false, e.g. an
 * ioredis client passed to the module) on a frozen network path, a wait that close() interrupted
 * never settles: its give-back (LEAVE) waits for ever instead of at most wait + connectTimeout.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { engine, prefix, track, proxiedServer } from './regression-utils.js';
import { waitFor } from '../fixtures/lock-e2e-utils.js';

describe('regression: close() and calls still pending', () => {
  const env = proxiedServer();

  it.each([['a client the store does not own', false]])(
    'a wait interrupted by close() settles within wait + connectTimeout (%s)',
    async (_name, keepSweep) => {
      env.proxy.blackhole(false);
      const keyPrefix = prefix('close');
      const holder = engine(env.server.url, keyPrefix);
      const victim = engine(env.proxy.url, keyPrefix, { connectTimeout: 300, ownsClient: false });
      env.engines.push(holder, victim);
      const key = `acct:4:${keepSweep}`;
      await holder.lc.acquire(key, { ttl: 10_000 });

      const started = Date.now();
      const waiting = track(victim.lc.acquire(key, { ttl: 5_000, wait: 2_000 }));
      await sleep(400); // queued and waiting
      env.proxy.blackhole(true);
      const t0 = Date.now();
      await victim.lc.close();
      const closeMs = Date.now() - t0;
      // wait + connectTimeout = 2300 ms after the start at most (+ slack)
      await waitFor('the interrupted wait to settle', async () => waiting.settled(), 4_000 - (Date.now() - started), 20).catch(
        () => undefined,
      );
      expect(closeMs).toBeLessThan(600);
      expect(waiting.settled()).toBe(true);
    },
    20_000,
  );
});
