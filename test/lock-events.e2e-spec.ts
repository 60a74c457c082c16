/**
 * Observability, part 1 (issue 11): every lock event fires with the right fields over a small scripted
 * run on a real Redis (uncontended, contended, timeout, heartbeat, lost, failed, @WithLock labels), the
 * same payloads reach `node:diagnostics_channel` subscribers (and nothing is built or published when
 * nobody listens), `stats()` follows locks and waits, and the contention warnings of the Nest logger
 * fire for a slow wait and a timeout but not for a fast acquisition.
 */
import 'reflect-metadata';
import { subscribe, unsubscribe, channel } from 'node:diagnostics_channel';
import { setTimeout as sleep } from 'node:timers/promises';
import { Controller, Injectable, Module, Post, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Redis } from 'ioredis';
import request from 'supertest';
import {
  LOCK_CHANNELS,
  LockArgumentError,
  LockClient,
  LockLostError,
  LockModule,
  LockService,
  LockShutdownError,
  LockTimeoutError,
  LockUnavailableError,
  RedisLockStore,
  RouteLock,
  WithLock,
  type LockEventName,
  type LockEvents,
  type LockModuleOptions,
} from 'nestjs-redis-lock';
import { dropKeys, randomPrefix, redisUrl, waitFor } from './fixtures/lock-e2e-utils.js';
import { CapturingLogger } from './fixtures/fault-utils.js';
import { startRedis } from './helpers/redis-server.js';

const EVENTS = Object.keys(LOCK_CHANNELS) as LockEventName[];
const SLOW_WAIT = 300;

type Seen = { event: LockEventName; payload: Record<string, unknown> };

@Injectable()
class Jobs {
  @WithLock('wl:default', 5000, 0)
  async byDefault(): Promise<string> {
    return 'default';
  }

  @WithLock({ key: 'wl:custom', ttl: 5000, wait: 0, label: 'nightly-report' })
  async overridden(): Promise<string> {
    return 'custom';
  }
}

@Controller('things')
class ThingsController {
  @Post()
  @RouteLock('rl:things', 5000, 0)
  async create(): Promise<{ ok: true }> {
    return { ok: true };
  }
}

/** Records every event of `target` (a LockService or LockClient), in order. */
function record(target: { on: LockService['on'] } | LockClient): { seen: Seen[]; of: (token: string) => Seen[]; stop: () => void } {
  const seen: Seen[] = [];
  const offs = EVENTS.map((event) => {
    const listener = (payload: Record<string, unknown>) => void seen.push({ event, payload });
    if (target instanceof LockClient) {
      target.on(event, listener as never);
      return () => void target.off(event, listener as never);
    }
    return target.on(event, listener as never);
  });
  return {
    seen,
    of: (token) => seen.filter((s) => s.payload.token === token),
    stop: () => offs.forEach((off) => off()),
  };
}

describe('lock events, diagnostics_channel, stats() and contention logging', () => {
  const url = redisUrl();
  const prefix = randomPrefix('events');
  const logger = new CapturingLogger();
  let app: INestApplicationContext;
  let locks: LockService;
  const clients: LockClient[] = [];

  /** A bare engine on the same Redis and prefix (no LockService listeners on it). */
  const bareClient = (options: Partial<ConstructorParameters<typeof LockClient>[0]> = {}): LockClient => {
    const store = new RedisLockStore({ client: new Redis(url), ownsClient: true, keyPrefix: prefix });
    const client = new LockClient({
      store,
      ownsStore: true,
      ttl: 5000,
      wait: 0,
      autoExtend: false,
      onLockLost: 'continue',
      connectTimeout: 1000,
      ...options,
    });
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    @Module({ imports: [LockModule.forRoot({ redis: url, keyPrefix: prefix, slowWaitMs: SLOW_WAIT })], providers: [Jobs] })
    class AppModule {}
    app = await NestFactory.createApplicationContext(AppModule, { logger, abortOnError: false });
    locks = app.get(LockService);
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await app?.close();
    await dropKeys(url, prefix);
  });

  it('uncontended acquire and release: acquiring, acquired, released with one token, the label and the timings', async () => {
    const events = record(locks);
    const lock = await locks.acquire('ev:plain', { ttl: 5000, wait: 1000, label: 'plain' });
    expect(locks.stats()).toEqual({ held: 1, acquiring: 0 });
    await lock.release();
    events.stop();
    expect(locks.stats()).toEqual({ held: 0, acquiring: 0 });
    const mine = events.of(lock.token);
    expect(mine.map((s) => s.event)).toEqual(['acquiring', 'acquired', 'released']);
    expect(mine[0]!.payload).toEqual({ keys: ['ev:plain'], token: lock.token, label: 'plain', wait: 1000 });
    expect(mine[1]!.payload).toEqual({
      keys: ['ev:plain'],
      token: lock.token,
      fencingToken: lock.fencingToken,
      waited: expect.any(Number),
      label: 'plain',
    });
    expect(mine[2]!.payload).toEqual({ keys: ['ev:plain'], token: lock.token, held: true, heldFor: expect.any(Number), label: 'plain' });
    // Orders of magnitude only: a free lock on a local Redis is taken well within a second.
    expect(mine[1]!.payload.waited).toBeLessThan(1000);
    expect(mine[2]!.payload.heldFor).toBeGreaterThanOrEqual(0);
    // Without a label the payloads carry none (undefined), and no contention warning for a fast acquisition.
    const unlabelled = record(locks);
    const other = await locks.acquire('ev:nolabel', { ttl: 5000 });
    await other.release();
    unlabelled.stop();
    expect(unlabelled.of(other.token).map((s) => s.payload.label)).toEqual([undefined, undefined, undefined]);
    expect(logger.warnings()).toEqual([]);
  });

  it('a contended wait: stats() counts the waiter, acquired reports the wait, and one slow-wait warning names label, key and wait', async () => {
    const events = record(locks);
    const holder = await locks.acquire('ev:busy', { ttl: 10_000, label: 'holder' });
    const waiting = locks.acquire('ev:busy', { ttl: 5000, wait: 10_000, label: 'waiter' });
    await waitFor('the waiter to start', async () => locks.stats().acquiring === 1, 5000, 10);
    expect(locks.stats()).toEqual({ held: 1, acquiring: 1 });
    // Held past slowWaitMs, so the waiter's wait is slow for certain (SLOW_WAIT + 200 ms at least).
    await sleep(SLOW_WAIT + 200);
    expect(logger.warnings()).toEqual([]);
    await holder.release();
    const lock = await waiting;
    expect(locks.stats()).toEqual({ held: 1, acquiring: 0 });
    await lock.release();
    events.stop();
    expect(locks.stats()).toEqual({ held: 0, acquiring: 0 });

    const mine = events.of(lock.token);
    expect(mine.map((s) => s.event)).toEqual(['acquiring', 'acquired', 'released']);
    expect(mine[1]!.payload.waited).toBeGreaterThanOrEqual(SLOW_WAIT + 200);
    expect(mine[1]!.payload.label).toBe('waiter');
    expect(events.of(holder.token).map((s) => s.event)).toEqual(['acquiring', 'acquired', 'released']);

    const warnings = logger.warnings();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^warn waiter: waited \d+ ms for the lock on "ev:busy" \(slowWaitMs: 300\)\./);
    logger.lines.length = 0;
  });

  it('a timeout: acquiring then timeout (same token, label, waited), a warning after a long wait; a short wait and a busy tryAcquire get the event but no warning', async () => {
    const events = record(locks);
    const holder = await locks.acquire('ev:timeout', { ttl: 10_000 });
    // Waited past slowWaitMs (300): contention worth a line.
    const error = await locks.acquire('ev:timeout', { ttl: 5000, wait: 400, label: 'impatient' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect(await locks.tryAcquire('ev:timeout', { label: 'probe' })).toBeNull();
    // A short wait that runs out (a BullMQ job with a 50 ms wait, requeued) is routine: no line per job.
    await expect(locks.acquire('ev:timeout', { ttl: 5000, wait: 50, label: 'short' })).rejects.toBeInstanceOf(LockTimeoutError);
    await holder.release();
    events.stop();

    const starts = events.seen.filter((s) => s.event === 'acquiring' && s.payload.label === 'impatient');
    expect(starts).toHaveLength(1);
    const token = starts[0]!.payload.token as string;
    expect(events.of(token).map((s) => s.event)).toEqual(['acquiring', 'timeout']);
    expect(events.of(token)[1]!.payload).toEqual({ keys: ['ev:timeout'], token, waited: expect.any(Number), label: 'impatient' });
    expect(events.of(token)[1]!.payload.waited).toBeGreaterThanOrEqual(350);

    const probe = events.seen.filter((s) => s.payload.label === 'probe').map((s) => s.event);
    expect(probe).toEqual(['acquiring', 'timeout']);
    expect(events.seen.filter((s) => s.event === 'acquiring')[2]!.payload.wait).toBe(0);

    const warnings = logger.warnings();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^warn impatient: gave up on the lock on "ev:timeout" after waiting \d+ ms\./);
    logger.lines.length = 0;
  });

  it('extended: the heartbeat (heartbeat: true) and lock.extend() (heartbeat: false), with ttl and label', async () => {
    const events = record(locks);
    let token = '';
    await locks.using('ev:beat', { ttl: 300, label: 'beating' }, async (lock) => {
      token = lock.token;
      await waitFor('two heartbeats', async () => events.of(token).filter((s) => s.event === 'extended').length >= 2, 5000, 20);
      await lock.extend(2000);
    });
    events.stop();
    const extended = events.of(token).filter((s) => s.event === 'extended');
    const beats = extended.filter((s) => s.payload.heartbeat === true);
    const calls = extended.filter((s) => s.payload.heartbeat === false);
    expect(beats.length).toBeGreaterThanOrEqual(2);
    for (const beat of beats) expect(beat.payload).toEqual({ keys: ['ev:beat'], token, ttl: 300, label: 'beating', heartbeat: true });
    expect(calls.map((s) => s.payload)).toEqual([{ keys: ['ev:beat'], token, ttl: 2000, label: 'beating', heartbeat: false }]);
    expect(events.of(token).at(-1)!.event).toBe('released');
  });

  it('lost: a force-released lock is found lost by its heartbeat; the event has the label and the warning too', async () => {
    const events = record(locks);
    const lock = await locks.acquire('ev:victim', { ttl: 300, autoExtend: true, label: 'victim' });
    expect(await locks.forceRelease('ev:victim')).toBe(true);
    await waitFor('the lost event', async () => events.of(lock.token).some((s) => s.event === 'lost'), 5000, 20);
    expect(locks.stats().held).toBe(0);
    await lock.release();
    events.stop();
    const lost = events.of(lock.token).find((s) => s.event === 'lost')!;
    expect(lost.payload).toEqual({ keys: ['ev:victim'], token: lock.token, error: expect.any(LockLostError), label: 'victim' });
    const warnings = logger.warnings();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^warn victim: The lock on "ev:victim" was lost: /);
    logger.lines.length = 0;
  });

  it('@WithLock: label `Class.method` by default, the `label` option overrides it', async () => {
    const events = record(locks);
    expect(await app.get(Jobs).byDefault()).toBe('default');
    expect(await app.get(Jobs).overridden()).toBe('custom');
    events.stop();
    const labels = (key: string) => [
      ...new Set(events.seen.filter((s) => (s.payload.keys as string[])[0] === key).map((s) => s.payload.label)),
    ];
    expect(labels('wl:default')).toEqual(['Jobs.byDefault']);
    expect(labels('wl:custom')).toEqual(['nightly-report']);
  });

  it('failed: an acquisition ended by shutdown, and one the store did not answer; a timeout is never also failed', async () => {
    const holder = bareClient();
    const waiter = bareClient();
    const held = await holder.acquire('ev:shutdown');
    const events = record(waiter);
    const waiting = waiter.acquire('ev:shutdown', { wait: 10_000, label: 'closing' }).catch((e: unknown) => e);
    await waitFor('the waiter to wait', async () => waiter.stats().acquiring === 1, 5000, 10);
    await waiter.close();
    expect(await waiting).toBeInstanceOf(LockShutdownError);
    const token = events.seen[0]!.payload.token as string;
    expect(events.seen.map((s) => s.event)).toEqual(['acquiring', 'failed']);
    expect(events.seen[1]!.payload).toEqual({ keys: ['ev:shutdown'], token, label: 'closing', error: expect.any(LockShutdownError) });
    await held.release();

    const server = await startRedis();
    // disconnectTimeout: ioredis otherwise keeps a 2 s timer alive when closing a connection that is down.
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50, disconnectTimeout: 100 });
    redis.on('error', () => undefined);
    const gone = new LockClient({
      store: new RedisLockStore({ client: redis, ownsClient: true, keyPrefix: prefix }),
      ownsStore: true,
      ttl: 5000,
      wait: 0,
      autoExtend: false,
      onLockLost: 'continue',
      connectTimeout: 300,
    });
    clients.push(gone);
    try {
      await (await gone.acquire('ev:gone')).release();
      await server.stop();
      const down = record(gone);
      const failure = await gone.acquire('ev:gone', { label: 'down' }).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(LockUnavailableError);
      expect(down.seen.map((s) => [s.event, s.payload.label])).toEqual([
        ['acquiring', 'down'],
        ['failed', 'down'],
      ]);
      expect(down.seen[1]!.payload.error).toBe(failure);
      expect(gone.stats()).toEqual({ held: 0, acquiring: 0 });
    } finally {
      await gone.close();
      await server.stop();
    }
  });
});

describe('@RouteLock events', () => {
  it('carry the label `Class.method`', async () => {
    const prefix = randomPrefix('route');
    @Module({ imports: [LockModule.forRoot({ redis: redisUrl(), keyPrefix: prefix })], controllers: [ThingsController] })
    class HttpModule {}
    const http = await NestFactory.create(HttpModule, new ExpressAdapter(), { logger: false });
    try {
      await http.init();
      const events = record(http.get(LockService));
      await request(http.getHttpServer()).post('/things').expect(201, { ok: true });
      events.stop();
      expect(events.seen.map((s) => [s.event, s.payload.keys, s.payload.label])).toEqual([
        ['acquiring', ['rl:things'], 'ThingsController.create'],
        ['acquired', ['rl:things'], 'ThingsController.create'],
        ['released', ['rl:things'], 'ThingsController.create'],
      ]);
    } finally {
      await http.close();
      await dropKeys(redisUrl(), prefix);
    }
  });
});

describe('diagnostics_channel', () => {
  const url = redisUrl();
  const prefix = randomPrefix('channels');
  let client: LockClient;
  let other: LockClient;

  /** Counts publish() calls on every lock channel (an own property shadows the prototype's, restored after). */
  const countPublishes = () => {
    const counts: Partial<Record<LockEventName, number>> = {};
    const restore = EVENTS.map((event) => {
      const ch = channel(LOCK_CHANNELS[event]) as unknown as { publish: (message: unknown) => void };
      // The prototype's publish, looked up per call: subscribing swaps the channel's prototype.
      ch.publish = function (this: object, message: unknown) {
        counts[event] = (counts[event] ?? 0) + 1;
        return (Object.getPrototypeOf(this) as { publish: (m: unknown) => void }).publish.call(this, message);
      };
      return () => void delete (ch as { publish?: unknown }).publish;
    });
    return { counts, restore: () => restore.forEach((r) => r()) };
  };

  /** Counts the engine's emit() calls (each one is a payload built). */
  const countEmits = (target: LockClient) => {
    let n = 0;
    const original = target.emit;
    target.emit = function (this: LockClient, ...args: Parameters<LockClient['emit']>) {
      n++;
      return original.apply(this, args);
    } as LockClient['emit'];
    return { count: () => n, restore: () => void delete (target as { emit?: unknown }).emit };
  };

  /** Every kind of event: uncontended, a wait, a timeout, a busy tryAcquire, an extension, a loss. */
  const script = async (): Promise<void> => {
    const a = await client.acquire('ch:a', { label: 'a' });
    const waiting = client.acquire('ch:a', { wait: 5000, label: 'b' });
    await sleep(50);
    await a.release();
    const b = await waiting;
    await expect(client.acquire('ch:a', { wait: 50 })).rejects.toBeInstanceOf(LockTimeoutError);
    expect(await client.tryAcquire('ch:a')).toBeNull();
    await b.extend(5000);
    await other.forceRelease('ch:a');
    await expect(b.extend(5000)).rejects.toBeInstanceOf(LockLostError);
    await b.release();
  };

  beforeAll(() => {
    const make = () =>
      new LockClient({
        store: new RedisLockStore({ client: new Redis(url), ownsClient: true, keyPrefix: prefix }),
        ownsStore: true,
        ttl: 5000,
        wait: 0,
        autoExtend: false,
        onLockLost: 'continue',
        connectTimeout: 1000,
      });
    client = make();
    other = make();
  });

  afterAll(async () => {
    await client.close();
    await other.close();
    await dropKeys(url, prefix);
  });

  it('channel names are nestjs-redis-lock:<event>, one per event', () => {
    expect(LOCK_CHANNELS).toEqual(Object.fromEntries(EVENTS.map((e) => [e, `nestjs-redis-lock:${e}`])));
    expect([...EVENTS].sort()).toEqual(
      ['acquired', 'acquiring', 'extended', 'failed', 'idempotent', 'lost', 'released', 'requeued', 'timeout'].sort(),
    );
  });

  it('with no listener and no subscriber nothing is built nor published; a subscriber alone gets the payloads', async () => {
    const publishes = countPublishes();
    const emits = countEmits(client);
    try {
      await script();
      expect(emits.count()).toBe(0);
      expect(publishes.counts).toEqual({});

      // The control: the same script with subscribers (and still no listener) publishes every kind.
      const received: Seen[] = [];
      const handlers = EVENTS.map((event) => {
        const handler = (message: unknown) => void received.push({ event, payload: message as Record<string, unknown> });
        subscribe(LOCK_CHANNELS[event], handler);
        return () => void unsubscribe(LOCK_CHANNELS[event], handler);
      });
      try {
        await script();
      } finally {
        handlers.forEach((off) => off());
      }
      expect(emits.count()).toBeGreaterThan(0);
      const kinds = new Set(received.map((r) => r.event));
      for (const kind of ['acquiring', 'acquired', 'released', 'extended', 'lost', 'timeout'] as const) expect(kinds).toContain(kind);
      expect(publishes.counts.acquiring).toBe(4);
      expect(publishes.counts.acquired).toBe(2);
      expect(publishes.counts.timeout).toBe(2);
      const acquired = received.find((r) => r.event === 'acquired' && r.payload.label === 'b')!;
      expect(acquired.payload).toEqual({
        keys: ['ch:a'],
        token: expect.any(String),
        fencingToken: expect.any(Number),
        waited: expect.any(Number),
        label: 'b',
      });
    } finally {
      emits.restore();
      publishes.restore();
    }
  });

  it('listeners and subscribers get the same payload object', async () => {
    const fromListener: unknown[] = [];
    const fromChannel: unknown[] = [];
    const listener = (payload: LockEvents['acquired'][0]) => void fromListener.push(payload);
    const handler = (message: unknown) => void fromChannel.push(message);
    client.on('acquired', listener);
    subscribe(LOCK_CHANNELS.acquired, handler);
    try {
      await (await client.acquire('ch:same', { label: 'same' })).release();
    } finally {
      client.off('acquired', listener);
      unsubscribe(LOCK_CHANNELS.acquired, handler);
    }
    expect(fromChannel).toHaveLength(1);
    expect(fromChannel[0]).toBe(fromListener[0]);
  });
});

describe('bad label and slowWaitMs values are refused with clear errors', () => {
  const url = redisUrl();
  const prefix = randomPrefix('badlabel');

  it.each([
    ['an empty string', ''],
    ['201 characters', 'x'.repeat(201)],
    ['a number', 42],
    ['null', null],
  ])('label: %s', async (_what, label) => {
    const client = new LockClient({
      store: new RedisLockStore({ client: new Redis(url), ownsClient: true, keyPrefix: prefix }),
      ownsStore: true,
      ttl: 5000,
      wait: 0,
      autoExtend: false,
      onLockLost: 'continue',
      connectTimeout: 1000,
    });
    try {
      for (const call of [
        () => client.acquire('k', { label } as never),
        () => client.tryAcquire('k', { label } as never),
        () => client.using('k', { label } as never, () => 'ran'),
      ]) {
        const error = await call().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(LockArgumentError);
        expect((error as Error).message).toMatch(/: label must be a string of 1 to 200 characters, got /);
      }
      expect(() => WithLock('k', 1000, 0, { label } as never)).toThrow(/@WithLock\(\): label must be a string of 1 to 200 characters/);
      expect(() => WithLock({ key: 'k', label } as never)).toThrow(LockArgumentError);
      expect(client.stats()).toEqual({ held: 0, acquiring: 0 });
    } finally {
      await client.close();
    }
    // 200 characters are fine.
    expect(() => WithLock('k', 1000, 0, { label: 'x'.repeat(200) })).not.toThrow();
  });

  it.each([
    [-1, '-1'],
    ['1000', '"1000"'],
    [true, 'true'],
    [Number.NaN, 'NaN'],
    [2 ** 31, String(2 ** 31)],
  ])('slowWaitMs: %p', async (slowWaitMs, shown) => {
    const error = await NestFactory.createApplicationContext(
      LockModule.forRoot({ redis: url, slowWaitMs } as unknown as LockModuleOptions),
      { logger: false, abortOnError: false },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockArgumentError);
    expect((error as Error).message).toContain(
      `LockModule option "slowWaitMs" must be false (no contention logging) or a number of milliseconds`,
    );
    expect((error as Error).message).toContain(`got ${shown}`);
  });

  it('slowWaitMs: false and 0 turn contention logging off; 0 and false boot', async () => {
    for (const slowWaitMs of [false, 0] as const) {
      const logger = new CapturingLogger();
      const app = await NestFactory.createApplicationContext(LockModule.forRoot({ redis: url, keyPrefix: prefix, slowWaitMs }), {
        logger,
        abortOnError: false,
      });
      try {
        const locks = app.get(LockService);
        const holder = await locks.acquire('quiet', { ttl: 5000 });
        await expect(locks.acquire('quiet', { wait: 100, label: 'quiet' })).rejects.toBeInstanceOf(LockTimeoutError);
        await holder.release();
        expect(logger.warnings()).toEqual([]);
      } finally {
        await app.close();
      }
    }
    await dropKeys(url, prefix);
  });
});
