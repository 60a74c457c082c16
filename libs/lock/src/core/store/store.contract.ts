/**
 * describeLockStore(): the behavioural suite every LockStore runs, through the engine (LockClient):
 * memory and one Redis in core/lock-client.spec.ts; Redis Cluster and the Redlock quorum in test/
 * (lock-store-*.e2e-spec.ts), against servers started there. Tests that need a capability the store
 * does not have (the FIFO queue with hand-off) are skipped for it, by name.
 * Not part of the package (excluded from the build); imports jest's globals.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LockArgumentError, LockLostError, LockShutdownError, LockTimeoutError, LockUnavailableError } from '../errors.js';
import { LockClient, type LockClientOptions } from '../lock-client.js';
import type { LockStore, StoreListener } from './store.js';
import { currentLock } from '../context.js';

/**
 * How the suite makes stores of one kind, and finds what they left behind.
 */
export interface StoreFixture {
  make(prefix: string): LockStore;
  /** Lock-related keys left under the prefix. */
  leftovers(prefix: string): Promise<string[]>;
  close(): Promise<void>;
}

/** What the store offers beyond the core contract. */
export interface StoreCapabilities {
  /** FIFO queue with atomic hand-off (grants in arrival order, no barging). Default true. */
  readonly queue?: boolean;
}

/** Holds `holdKey` with `holder`, lets `waiter` wait for `waitKeys`, releases: the release-to-acquired gap of each round. */
async function wakeGaps(
  holder: LockClient,
  waiter: LockClient,
  holdKey: string | string[],
  waitKeys: string | string[],
  rounds: number,
  whileWaiting: () => Promise<void> = async () => undefined,
): Promise<number[]> {
  const gaps: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const lock = await holder.acquire(holdKey, { ttl: 10_000 });
    const pending = waiter.acquire(waitKeys, { wait: 5000 });
    await sleep(150 + round * 37);
    await whileWaiting();
    const releasedAt = Date.now();
    await lock.release();
    const got = await pending;
    gaps.push(Date.now() - releasedAt);
    await got.release();
  }
  return gaps;
}

/** `store`, with its n-th acquire call (counted from 1) delayed before or after it reaches the store. */
function slowStore(store: LockStore, delay: (call: number) => { before?: number; after?: number }): LockStore & { calls: number } {
  const slow = {
    calls: 0,
    acquire: async (request: Parameters<LockStore['acquire']>[0]) => {
      const { before = 0, after = 0 } = delay(++slow.calls);
      if (before) await sleep(before);
      const result = await store.acquire(request);
      if (after) await sleep(after);
      return result;
    },
    release: (keys: readonly string[], token: string) => store.release(keys, token),
    extend: (keys: readonly string[], token: string, ttl: number) => store.extend(keys, token, ttl),
    inspect: (key: string, token: string) => store.inspect(key, token),
    isLocked: (key: string) => store.isLocked(key),
    forceRelease: (key: string) => store.forceRelease(key),
    leave: (request: Parameters<LockStore['leave']>[0]) => store.leave(request),
    watch: (keys: readonly string[], token: string, listener: StoreListener) => store.watch!(keys, token, listener),
    close: async () => undefined,
  };
  return slow;
}

/** Runs the behavioural suite against stores made by `makeFixture`. */
export function describeLockStore(name: string, makeFixture: () => StoreFixture, capabilities: StoreCapabilities = {}): void {
  const queue = capabilities.queue ?? true;
  /** A test that needs the queue capability. */
  const itQueued = queue ? it : it.skip;
  describe(`LockClient on the ${name} store`, () => {
    let fixture: StoreFixture;
    let prefix: string;
    const clients: LockClient[] = [];

    const client = (overrides: Partial<LockClientOptions> = {}): LockClient => {
      const c = new LockClient({
        store: fixture.make(prefix),
        ttl: 2000,
        wait: 2000,
        autoExtend: true,
        onLockLost: 'continue',
        connectTimeout: 2000,
        ...overrides,
      });
      clients.push(c);
      return c;
    };

    beforeAll(() => {
      fixture = makeFixture();
    });
    beforeEach(() => {
      prefix = `t${Math.random().toString(36).slice(2, 10)}:`;
    });
    afterEach(async () => {
      await Promise.all(clients.splice(0).map((c) => c.close()));
    });
    afterAll(async () => {
      await fixture.close();
    });

    it('acquires, excludes a second owner, releases and leaves no key behind', async () => {
      const a = client();
      const b = client();
      const lock = await a.acquire('k');
      expect(lock.keys).toEqual(['k']);
      expect(lock.token).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(await b.tryAcquire('k')).toBeNull();
      expect(await b.isLocked('k')).toBe(true);
      expect(await lock.release()).toBe(true);
      expect(await lock.release()).toBe(false);
      expect(await b.isLocked('k')).toBe(false);
      expect(await fixture.leftovers(prefix)).toEqual([]);
    });

    it('keeps idempotency records: written only while the token holds the lock, read back by anyone, gone after their ttl', async () => {
      const a = client();
      const b = client();
      expect(await b.getRecord('idempotency:r')).toBeUndefined();
      const lease = await a.acquire('idempotency:r', { ttl: 5000 });
      const other = await b.acquire('other', { ttl: 5000 });
      // A record for a lock this token does not hold is refused (owner-checked, like a release).
      expect(await b.putRecord({ ...other, key: 'idempotency:r', keys: ['idempotency:r'] } as typeof other, '{"v":1}', 5000)).toBe(false);
      expect(await a.putRecord(lease, '{"v":1,"r":42}', 300)).toBe(true);
      expect(await b.getRecord('idempotency:r')).toBe('{"v":1,"r":42}');
      await lease.release();
      await other.release();
      expect(await b.getRecord('idempotency:r')).toBe('{"v":1,"r":42}');
      await sleep(400);
      expect(await b.getRecord('idempotency:r')).toBeUndefined();
      // A released lease writes nothing.
      expect(await a.putRecord(lease, '{"v":1,"r":43}', 5000)).toBe(false);
      expect(await fixture.leftovers(prefix)).toEqual([]);
    });

    it('gives up with LockTimeoutError after about `wait`', async () => {
      const a = client();
      const held = await a.acquire('k', { ttl: 5000 });
      const started = Date.now();
      const error = await client()
        .acquire('k', { wait: 300 })
        .catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect((error as LockTimeoutError).keys).toEqual(['k']);
      expect((error as LockTimeoutError).waited).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(2000);
      await held.release();
      expect(await fixture.leftovers(prefix)).toEqual([]);
    });

    it('never releases a lock that expired and now belongs to someone else', async () => {
      const first = await client().acquire('k', { ttl: 100 });
      await sleep(200);
      const second = await client().acquire('k', { ttl: 5000, wait: 0 });
      expect(await first.release()).toBe(false);
      expect(await client().isLocked('k')).toBe(true);
      await expect(first.extend()).rejects.toBeInstanceOf(LockLostError);
      expect(await second.release()).toBe(true);
    });

    it('issues strictly increasing fencing tokens, also across an expiry', async () => {
      const c = client();
      const seen: number[] = [];
      for (let i = 0; i < 3; i++) {
        const lock = await c.acquire('k');
        seen.push(lock.fencingToken);
        await lock.release();
      }
      const expiring = await c.acquire('k', { ttl: 50 });
      seen.push(expiring.fencingToken);
      await sleep(120);
      const after = await c.acquire('k', { wait: 0 });
      seen.push(after.fencingToken);
      await after.release();
      for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]!);
    });

    it('takes several keys all-or-nothing', async () => {
      const c = client();
      const b = await c.acquire('b');
      expect(await client().tryAcquire(['a', 'b'])).toBeNull();
      expect(await c.isLocked('a')).toBe(false);
      await b.release();
      const both = await c.acquire(['a', 'b', 'a']);
      expect(both.keys).toEqual(['a', 'b']);
      expect(both.fencingTokens).toHaveLength(2);
      expect(await c.isLocked('a')).toBe(true);
      expect(await c.isLocked('b')).toBe(true);
      await both.release();
      expect(await fixture.leftovers(prefix)).toEqual([]);
    });

    it('wakes a waiter at once on release (no polling)', async () => {
      const gaps = await wakeGaps(client(), client(), 'k', 'k', 5);
      // The safety-net retry runs every 50-1000 ms; five wake-ups under 50 ms each prove notification.
      expect(Math.max(...gaps)).toBeLessThan(50);
    });

    it('wakes a multi-key waiter at once when one of its keys is released', async () => {
      const waiter = client();
      const gaps = await wakeGaps(client(), waiter, 'b', ['a', 'b'], 3, async () => {
        expect(await waiter.isLocked('a')).toBe(false); // all-or-nothing: it took no key while waiting
      });
      expect(Math.max(...gaps)).toBeLessThan(50);
      expect(await fixture.leftovers(prefix)).toEqual([]);
    });

    it('wakes a waiter at once when a multi-key holder releases', async () => {
      const gaps = await wakeGaps(client(), client(), ['a', 'b'], 'a', 3);
      expect(Math.max(...gaps)).toBeLessThan(50);
      expect(await fixture.leftovers(prefix)).toEqual([]);
    });

    itQueued('hands the lock to waiters in arrival order', async () => {
      const holder = await client().acquire('k', { ttl: 10_000 });
      const order: number[] = [];
      const waiters = [0, 1, 2].map(async (i) => {
        await sleep(i * 60);
        const lock = await client().acquire('k', { wait: 5000 });
        order.push(i);
        await sleep(10);
        await lock.release();
      });
      await sleep(250);
      await holder.release();
      await Promise.all(waiters);
      expect(order).toEqual([0, 1, 2]);
    });

    itQueued('a newcomer does not jump the queue when the holder expired under a queued waiter', async () => {
      const store = fixture.make(prefix);
      const holder = await client().acquire('k', { ttl: 100 });
      // A waiter queued straight on the store, so that no retry timer of an engine interferes.
      const waiter = { keys: ['k'], token: 'w'.repeat(22), ttl: 5000, queueFor: 5000 };
      expect(await store.acquire(waiter)).toMatchObject({ acquired: false });
      await sleep(200);
      expect(holder.isHeld).toBe(false); // its validity ran out: it knows without asking the store
      expect(await client().tryAcquire('k')).toBeNull();
      expect(await store.inspect('k', waiter.token)).toMatchObject({ held: true });
      // The waiter's next attempt finds the lock already handed to it, with part of its ttl used up.
      await sleep(60);
      const again = await store.acquire(waiter);
      expect(again.acquired).toBe(true);
      expect(again.acquired && again.remaining).toBeLessThanOrEqual(waiter.ttl - 50);
      expect(await store.release(['k'], waiter.token)).toBe('released');
    });

    it('rejects a waiter that gave up without leaving it the lock', async () => {
      const holder = await client().acquire('k', { ttl: 10_000 });
      await expect(client().acquire('k', { wait: 100 })).rejects.toBeInstanceOf(LockTimeoutError);
      await holder.release();
      // the abandoned waiter must not have been handed the lock
      expect(await client().isLocked('k')).toBe(false);
      expect(await fixture.leftovers(prefix)).toEqual([]);
    });

    it('keeps the lock while using() runs three times its ttl, and frees it at once after', async () => {
      const c = client();
      const other = client();
      let heldMidway: boolean | undefined;
      await c.using('k', { ttl: 300 }, async (lock) => {
        await sleep(450);
        heldMidway = (await other.tryAcquire('k')) === null;
        await sleep(450);
        expect(lock.signal.aborted).toBe(false);
      });
      expect(heldMidway).toBe(true);
      const next = await other.acquire('k', { wait: 0 });
      await next.release();
    });

    it('aborts the signal when the lock is taken away, and the new holder fences the old one out', async () => {
      const c = client();
      const lock = await c.acquire('k', { ttl: 300, autoExtend: true });
      const lost = new Promise<unknown>((resolve) => lock.signal.addEventListener('abort', () => resolve(lock.signal.reason)));
      expect(await client().forceRelease('k')).toBe(true);
      const thief = await client().acquire('k', { wait: 0, ttl: 5000 });
      const reason = await Promise.race([lost, sleep(2000).then(() => 'no abort')]);
      expect(reason).toBeInstanceOf(LockLostError);
      expect(lock.isHeld).toBe(false);
      expect(thief.fencingToken).toBeGreaterThan(lock.fencingToken);
      expect(await lock.release()).toBe(false);
      expect(await client().isLocked('k')).toBe(true);
      await thief.release();
    });

    it('an extension racing with release never keeps or re-creates the lock', async () => {
      const c = client();
      const observer = client();
      for (let round = 0; round < 15; round++) {
        // ttl 150: the heartbeat extends every ~50 ms, so releases land before, during and after extensions
        // (with 100 ms to spare for a busy machine's timers).
        const lock = await c.acquire('k', { ttl: 150, autoExtend: true });
        await sleep(round * 8);
        expect(await lock.release()).toBe(true);
        expect(await observer.isLocked('k')).toBe(false);
      }
      await sleep(200);
      expect(await observer.isLocked('k')).toBe(false);
      expect(await fixture.leftovers(prefix)).toEqual([]);
    });

    it('a holder stalled past its ttl (event loop blocked) sees signal abort, and the next holder has a higher fencing token', async () => {
      const stalled = await client().acquire('k', { ttl: 200, autoExtend: true });
      const next = client().acquire('k', { wait: 5000, ttl: 5000 });
      const until = Date.now() + 500;
      while (Date.now() < until) {
        // busy: no timer, no heartbeat, no I/O can run in this process
      }
      const successor = await next;
      await new Promise((resolve) => (stalled.signal.aborted ? resolve(undefined) : stalled.signal.addEventListener('abort', resolve)));
      expect(stalled.signal.reason).toBeInstanceOf(LockLostError);
      expect(successor.fencingToken).toBeGreaterThan(stalled.fencingToken);
      expect(await stalled.release()).toBe(false);
      await successor.release();
    });

    it.each([300, 160, 205])('maxHold caps the heartbeat: the lock then counts as lost (ttl 150, maxHold %i)', async (maxHold) => {
      const reasons: string[] = [];
      const c = client();
      c.on('lost', ({ error }) => reasons.push(error.reason));
      await c.using('k', { ttl: 150, maxHold }, async (lock) => {
        await new Promise((resolve) => lock.signal.addEventListener('abort', resolve));
      });
      // Also when maxHold leaves less than an extension's worth: the lock expires for maxHold, not
      // because the last, too short extension came too late.
      expect(reasons).toEqual([expect.stringContaining('maxHold')]);
    });

    it('does not start work on a lock whose validity ran out during a slow acquire', async () => {
      const store = fixture.make(prefix);
      // The store answers acquire only after 150 ms: longer than the 100 ms ttl.
      const slow = slowStore(store, () => ({ after: 150 }));
      const c = client({ store: slow });
      let ran = false;
      const outcome = await c.using('k', { ttl: 100, wait: 400 }, async () => (ran = true)).catch((e: unknown) => e);
      expect(outcome).toBeInstanceOf(LockTimeoutError);
      expect(ran).toBe(false);
      // the work is fine once the answer comes in time
      expect(await client().using('k', { ttl: 1000, wait: 1000 }, async () => 'ok')).toBe('ok');
    });

    it('with onLockLost: throw, using() rejects with LockLostError after losing the lock', async () => {
      const c = client({ onLockLost: 'throw' });
      const run = c.using('k', { ttl: 300 }, async (lock) => {
        await client().forceRelease('k');
        await new Promise((resolve) => lock.signal.addEventListener('abort', resolve));
        return 'done';
      });
      await expect(run).rejects.toBeInstanceOf(LockLostError);
    });

    it('is re-entrant within one call chain, but not across concurrent chains', async () => {
      const c = client();
      const inner = await c.using('k', {}, async (outer) =>
        c.using('k', { wait: 0 }, async (nested) => {
          expect(currentLock()).toBe(outer);
          return nested === outer;
        }),
      );
      expect(inner).toBe(true);
      expect(await c.isLocked('k')).toBe(false);

      const events: string[] = [];
      const chain = (name: string) =>
        c.using('k', { wait: 3000 }, async () => {
          events.push(`${name} in`);
          await sleep(100);
          events.push(`${name} out`);
        });
      await Promise.all([chain('a'), chain('b')]);
      expect(events).toEqual(['a in', 'a out', 'b in', 'b out']);
      expect(currentLock()).toBeUndefined();
    });

    it('passes the result and the error of the work through unchanged', async () => {
      const c = client();
      const boom = new Error('business rule');
      expect(await c.using('k', {}, async () => 42)).toBe(42);
      await expect(c.using('k', {}, async () => Promise.reject(boom))).rejects.toBe(boom);
      expect(await c.isLocked('k')).toBe(false);
    });

    it('restores a lock from its token and releases it owner-checked', async () => {
      const a = client();
      const lock = await a.acquire('k');
      const b = client();
      const restored = await b.restore('k', lock.token);
      expect(restored.fencingToken).toBe(lock.fencingToken);
      await expect(b.restore('k', 'x'.repeat(22))).rejects.toBeInstanceOf(LockLostError);
      expect(await restored.release()).toBe(true);
      expect(await a.isLocked('k')).toBe(false);
    });

    it('close() during an acquisition in flight rejects it at once and leaves nothing behind', async () => {
      const holder = await client().acquire('k', { ttl: 10_000 });
      const c = client();
      const started = Date.now();
      const pending = c.acquire('k', { wait: 5000 }).catch((e: unknown) => e);
      await c.close();
      expect(await pending).toBeInstanceOf(LockShutdownError);
      expect(Date.now() - started).toBeLessThan(1000);
      await holder.release();
      expect(await client().isLocked('k')).toBe(false);
    });

    it('an attempt whose answer came too late never leaves two owners', async () => {
      const store = fixture.make(prefix);
      // Calls: 1 plain attempt, 2 queued attempt (b joins the queue), 3 the first safety-net retry.
      // Call 3 reaches the store only after 700 ms, past the wait, as a command stuck in a client's
      // offline queue would; meanwhile the release hands the lock to b, so call 3 finds it b's.
      const slow = slowStore(store, (call) => ({ before: call === 3 ? 700 : 0 }));
      const holder = await client().acquire('k', { ttl: 5000 });
      const b = client({ store: slow, connectTimeout: 100 });
      const pending = b.acquire('k', { wait: 400, ttl: 5000 }).catch((e: unknown) => e);
      await sleep(250);
      await holder.release(); // hands the lock to b's queued token
      const outcome = await pending;
      await sleep(900); // let the late answer arrive and be dealt with
      const other = await client().tryAcquire('k');
      expect(slow.calls).toBeGreaterThanOrEqual(3);
      if (outcome instanceof Error) {
        expect([LockTimeoutError.name, LockUnavailableError.name]).toContain(outcome.name);
      } else {
        // b kept the lock: it must really be b's, so nobody else can have it
        expect((outcome as { isHeld: boolean }).isHeld).toBe(true);
        expect(other).toBeNull();
      }
      await other?.release();
    });

    it('dispatchUnique: locks at dispatch, refuses a duplicate, and the worker restores and releases', async () => {
      const dispatcher = client();
      const queue: { id: number; lock: { key: string; token: string } }[] = [];
      const first = await dispatcher.dispatchUnique('report:1', { ttl: 5000 }, (lock) => queue.push({ id: 1, lock }));
      const duplicate = await dispatcher.dispatchUnique('report:1', { ttl: 5000 }, (lock) => queue.push({ id: 2, lock }));
      expect(first).toBe(1);
      expect(duplicate).toBeNull();
      expect(queue.map((j) => j.id)).toEqual([1]);
      await dispatcher.close(); // the dispatcher shutting down must not free the job's lock
      const worker = client();
      expect(await worker.isLocked('report:1')).toBe(true);
      const lock = await worker.restore(queue[0]!.lock.key, queue[0]!.lock.token);
      expect(await lock.release()).toBe(true);
      expect(await worker.isLocked('report:1')).toBe(false);
      const boom = new Error('queue down');
      await expect(worker.dispatchUnique('report:2', {}, () => Promise.reject(boom))).rejects.toBe(boom);
      expect(await worker.isLocked('report:2')).toBe(false);
    });

    it('rejects bad input before touching the store', async () => {
      const c = client();
      await expect(c.acquire('')).rejects.toThrow('must not be empty');
      await expect(c.acquire('x'.repeat(1025))).rejects.toThrow('limit is 1024');
      await expect(c.acquire(42 as never)).rejects.toThrow('must be a string, got number');
      await expect(c.acquire([])).rejects.toThrow('at least one key');
      await expect(c.acquire('k', { ttl: 0 })).rejects.toThrow('ttl must be a positive finite number');
      await expect(c.acquire('k', { ttl: Infinity })).rejects.toBeInstanceOf(LockArgumentError);
      await expect(c.acquire('k', { wait: -1 })).rejects.toThrow('wait must be a finite number');
      await expect(c.acquire('k', { wait: NaN })).rejects.toBeInstanceOf(LockArgumentError);
      expect(await fixture.leftovers(prefix)).toEqual([]);
      expect(await c.isLocked('k')).toBe(false);
    });

    it('on close: rejects pending waits, stops heartbeats and releases held locks', async () => {
      const c = client();
      await c.acquire('k', { ttl: 10_000, autoExtend: true });
      const held = await c.acquire('k2', { ttl: 10_000 });
      const waiting = c.acquire('k', { wait: 10_000 }).catch((e: unknown) => e);
      await sleep(50);
      await c.close();
      expect(await waiting).toBeInstanceOf(LockShutdownError);
      // work still running under a lock is told that it no longer holds it
      expect(held.signal.aborted).toBe(true);
      expect(held.signal.reason).toBeInstanceOf(LockLostError);
      await expect(c.acquire('other')).rejects.toBeInstanceOf(LockShutdownError);
      const observer = client();
      expect(await observer.isLocked('k')).toBe(false);
    });
  });
}
