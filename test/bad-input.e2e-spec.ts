/**
 * Point 6 of "The lease never lies": every argument is bounded and checked, and a bad one fails with
 * LockArgumentError (LockShutdownError after close()) before anything is sent to Redis.
 *
 * "Not sent" is measured on a private redis-server: `total_commands_processed` and
 * `total_net_input_bytes` of INFO stats must move by exactly what the probe's own INFO adds (measured
 * once, before the table). Bytes catch even a command Redis would refuse without running it.
 * The control rows at the end show the same measurement sees a call that does reach Redis.
 */
import 'reflect-metadata';
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  LockArgumentError,
  LockClient,
  LockModule,
  LockShutdownError,
  RedisLockStore,
  RouteLock,
  WithLock,
  type Lock,
} from 'nestjs-redis-lock';
import { startRedis, stopAll, type RedisServerHandle } from './helpers/redis-server.js';

const GOOD_TOKEN = 'AbCdEfGhIjKlMnOp_-0123';
const noop = async () => 'ran';

@Injectable()
class Keyed {
  ran = 0;

  @WithLock(((id: string) => Promise.resolve(`k:${id}`)) as never, 1000, 0)
  async promiseKey(_id: string): Promise<void> {
    this.ran++;
  }

  @WithLock((async (id: string) => `k:${id}`) as never, 1000, 0)
  async asyncKey(_id: string): Promise<void> {
    this.ran++;
  }

  @WithLock((() => 42) as never, 1000, 0)
  async numberKey(): Promise<void> {
    this.ran++;
  }

  @WithLock(() => '}x', 1000, 0)
  async braceKey(): Promise<void> {
    this.ran++;
  }

  @WithLock(() => ['ok', '\uD800'], 1000, 0)
  async surrogateKey(): Promise<void> {
    this.ran++;
  }

  @WithLock(() => [], 1000, 0)
  async noKey(): Promise<void> {
    this.ran++;
  }

  @WithLock((id: string) => `good:${id}`, 1000, 0)
  async good(id: string): Promise<string> {
    this.ran++;
    return id;
  }
}

@Module({})
class NoModule {}

type ErrorClass = abstract new (...args: never[]) => Error;

interface Row {
  /** What is wrong, and where. */
  readonly name: string;
  /** Runs before the measurement: a held lock for extend() rows. */
  readonly setup?: () => Promise<Lock>;
  readonly call: (lock: Lock | undefined) => unknown;
  readonly error: ErrorClass;
  /** Text the message must contain: the offending value or option name. */
  readonly fragment: string;
  /** Text the message must not contain (a long value printed whole). */
  readonly absent?: string;
}

describe('bad input fails before Redis is touched', () => {
  let server: RedisServerHandle;
  let storeClient: Redis;
  let probe: Redis;
  let client: LockClient;
  let closed: LockClient;
  let app: INestApplicationContext;
  let keyed: Keyed;
  /** What one INFO of the probe adds between two samples. */
  let overhead: Sample;

  interface Sample {
    commands: number;
    bytes: number;
  }

  async function sample(): Promise<Sample> {
    const info = String(await probe.info('stats'));
    const field = (name: string): number => {
      const match = new RegExp(`^${name}:(\\d+)`, 'm').exec(info);
      if (!match) throw new Error(`INFO stats has no ${name}`);
      return Number(match[1]);
    };
    return { commands: field('total_commands_processed'), bytes: field('total_net_input_bytes') };
  }

  const delta = (before: Sample, after: Sample): Sample => ({
    commands: after.commands - before.commands - overhead.commands,
    bytes: after.bytes - before.bytes - overhead.bytes,
  });

  /** Waits until nobody but the probe talks to Redis (connection setup, a late release of a failed row). */
  async function quiet(): Promise<void> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const before = await sample();
      await sleep(20);
      const moved = delta(before, await sample());
      if (moved.commands === 0 && moved.bytes === 0) return;
    }
    throw new Error('Redis did not go quiet within 2 s');
  }

  /** Runs `fn` and reports what it sent to Redis beyond the probe's own INFO. */
  async function measure(fn: () => unknown): Promise<{ outcome: { error: unknown } | { value: unknown }; sent: Sample }> {
    await quiet();
    const before = await sample();
    let outcome: { error: unknown } | { value: unknown };
    try {
      outcome = { value: await fn() };
    } catch (error) {
      outcome = { error };
    }
    return { outcome, sent: delta(before, await sample()) };
  }

  beforeAll(async () => {
    server = await startRedis();
    probe = new Redis(server.url);
    storeClient = new Redis(server.url);
    await Promise.all([probe.ping(), storeClient.ping()]);
    const store = new RedisLockStore({ client: storeClient, keyPrefix: 'bad:' });
    const settings = { store, ttl: 1000, wait: 0, autoExtend: false, onLockLost: 'continue', connectTimeout: 1000 } as const;
    client = new LockClient(settings);
    closed = new LockClient(settings);
    await closed.close();

    @Module({ imports: [LockModule.forRoot({ redis: server.url, keyPrefix: 'badapp:', wait: 0 })], providers: [Keyed] })
    class AppModule {}
    app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    keyed = app.get(Keyed);

    // The probe's own INFO, measured with nothing else going on.
    await sleep(50);
    let first = await sample();
    let second = await sample();
    overhead = { commands: 0, bytes: 0 };
    for (let attempt = 0; attempt < 50 && second.commands - first.commands !== 1; attempt++) {
      await sleep(20);
      first = await sample();
      second = await sample();
    }
    overhead = { commands: second.commands - first.commands, bytes: second.bytes - first.bytes };
    expect(overhead.commands).toBe(1);
    expect(overhead.bytes).toBeGreaterThan(0);
  });

  afterAll(async () => {
    await app?.close();
    await client?.close();
    await Promise.all([probe?.quit(), storeClient?.quit()]);
    await stopAll();
  });

  const held = (key: string) => () => client.acquire(key, { ttl: 5000 });

  const rows: Row[] = [
    // Keys, through every call that takes one.
    { name: 'acquire: empty key', call: () => client.acquire(''), error: LockArgumentError, fragment: 'must not be empty' },
    { name: 'acquire: number key', call: () => client.acquire(42 as never), error: LockArgumentError, fragment: 'got number (42)' },
    { name: 'acquire: null key', call: () => client.acquire(null as never), error: LockArgumentError, fragment: '(null)' },
    {
      name: 'acquire: 1,025-char key',
      call: () => client.acquire('x'.repeat(1025)),
      error: LockArgumentError,
      fragment: '1025 characters',
      absent: 'x'.repeat(61),
    },
    { name: 'acquire: lone high surrogate', call: () => client.acquire('\uD800'), error: LockArgumentError, fragment: '"\\ud800"' },
    { name: 'acquire: lone low surrogate', call: () => client.acquire('a\uDC00b'), error: LockArgumentError, fragment: '"a\\udc00b"' },
    { name: 'acquire: leading }', call: () => client.acquire('}x'), error: LockArgumentError, fragment: '"}x"' },
    { name: 'acquire: empty key list', call: () => client.acquire([]), error: LockArgumentError, fragment: 'at least one key' },
    {
      name: 'acquire: number in key list',
      call: () => client.acquire(['a', 7 as never]),
      error: LockArgumentError,
      fragment: 'got number (7)',
    },
    { name: 'acquire: empty key in list', call: () => client.acquire(['a', '']), error: LockArgumentError, fragment: 'must not be empty' },
    {
      name: 'acquire: Promise as key',
      call: () => client.acquire(Promise.resolve('k') as never),
      error: LockArgumentError,
      fragment: 'Promise',
    },
    { name: 'tryAcquire: leading }', call: () => client.tryAcquire('}y'), error: LockArgumentError, fragment: '"}y"' },
    { name: 'using: lone surrogate', call: () => client.using('\uDBFF', {}, noop), error: LockArgumentError, fragment: '"\\udbff"' },
    { name: 'restore: empty key', call: () => client.restore('', GOOD_TOKEN), error: LockArgumentError, fragment: 'must not be empty' },
    {
      name: 'dispatchUnique: number key',
      call: () => client.dispatchUnique(42 as never, {}, noop),
      error: LockArgumentError,
      fragment: '(42)',
    },
    { name: 'isLocked: empty key', call: () => client.isLocked(''), error: LockArgumentError, fragment: 'must not be empty' },
    { name: 'isLocked: lone surrogate', call: () => client.isLocked('\uD801'), error: LockArgumentError, fragment: '"\\ud801"' },
    { name: 'forceRelease: leading }', call: () => client.forceRelease('}z'), error: LockArgumentError, fragment: '"}z"' },
    {
      name: 'forceRelease: 1,025-char key',
      call: () => client.forceRelease('q'.repeat(1025)),
      error: LockArgumentError,
      fragment: '1025 characters',
    },

    // ttl and maxHold: 10..2^31-1 ms.
    {
      name: 'acquire: ttl 0',
      call: () => client.acquire('k', { ttl: 0 }),
      error: LockArgumentError,
      fragment: 'ttl must be a positive finite number of milliseconds from 10 to 2147483647, got 0.',
    },
    { name: 'acquire: ttl -5', call: () => client.acquire('k', { ttl: -5 }), error: LockArgumentError, fragment: 'got -5' },
    {
      name: 'acquire: ttl 1.5 (below MIN_TTL)',
      call: () => client.acquire('k', { ttl: 1.5 }),
      error: LockArgumentError,
      fragment: 'got 1.5',
    },
    {
      name: 'acquire: ttl 9',
      call: () => client.acquire('k', { ttl: 9 }),
      error: LockArgumentError,
      fragment: 'got 9 (shorter than 10 ms',
    },
    { name: 'acquire: ttl 2^31', call: () => client.acquire('k', { ttl: 2 ** 31 }), error: LockArgumentError, fragment: 'got 2147483648' },
    {
      name: 'acquire: ttl 2^53',
      call: () => client.acquire('k', { ttl: 2 ** 53 }),
      error: LockArgumentError,
      fragment: 'got 9007199254740992',
    },
    { name: 'acquire: ttl NaN', call: () => client.acquire('k', { ttl: Number.NaN }), error: LockArgumentError, fragment: 'got NaN' },
    {
      name: 'acquire: ttl Infinity',
      call: () => client.acquire('k', { ttl: Infinity }),
      error: LockArgumentError,
      fragment: 'got Infinity',
    },
    {
      name: "acquire: ttl '100'",
      call: () => client.acquire('k', { ttl: '100' as never }),
      error: LockArgumentError,
      fragment: 'got "100"',
    },
    {
      name: 'acquire: ttl null',
      call: () => client.acquire('k', { ttl: null as never }),
      error: LockArgumentError,
      fragment: 'ttl must be',
    },
    { name: 'tryAcquire: ttl 0', call: () => client.tryAcquire('k', { ttl: 0 }), error: LockArgumentError, fragment: 'tryAcquire' },
    {
      name: 'using: ttl NaN',
      call: () => client.using('k', { ttl: Number.NaN }, noop),
      error: LockArgumentError,
      fragment: 'using(): ttl must be',
    },
    {
      name: 'restore: ttl -5',
      call: () => client.restore('k', GOOD_TOKEN, { ttl: -5 }),
      error: LockArgumentError,
      fragment: 'restore(): ttl must be',
    },
    {
      name: 'dispatchUnique: ttl 2^31',
      call: () => client.dispatchUnique('k', { ttl: 2 ** 31 }, noop),
      error: LockArgumentError,
      fragment: 'got 2147483648',
    },
    { name: 'acquire: maxHold 0', call: () => client.acquire('k', { maxHold: 0 }), error: LockArgumentError, fragment: 'maxHold must be' },
    {
      name: 'using: maxHold 2^31',
      call: () => client.using('k', { maxHold: 2 ** 31 }, noop),
      error: LockArgumentError,
      fragment: 'maxHold must be',
    },

    // wait: 0..2^31-1 ms.
    {
      name: 'acquire: wait -1',
      call: () => client.acquire('k', { wait: -1 }),
      error: LockArgumentError,
      fragment: 'wait must be a finite number of milliseconds from 0 to 2147483647, got -1.',
    },
    { name: 'acquire: wait NaN', call: () => client.acquire('k', { wait: Number.NaN }), error: LockArgumentError, fragment: 'got NaN' },
    { name: "acquire: wait '5'", call: () => client.acquire('k', { wait: '5' as never }), error: LockArgumentError, fragment: 'got "5"' },
    {
      name: 'acquire: wait 2^31',
      call: () => client.acquire('k', { wait: 2 ** 31 }),
      error: LockArgumentError,
      fragment: 'got 2147483648',
    },
    {
      name: 'using: wait -1',
      call: () => client.using('k', { wait: -1 }, noop),
      error: LockArgumentError,
      fragment: 'using(): wait must be',
    },
    {
      name: 'dispatchUnique: wait Infinity',
      call: () => client.dispatchUnique('k', { wait: Infinity }, noop),
      error: LockArgumentError,
      fragment: 'got Infinity',
    },

    // Option objects: names each call site knows, and their values.
    {
      name: 'acquire: { tll: 5 }',
      call: () => client.acquire('k', { tll: 5 } as never),
      error: LockArgumentError,
      fragment: 'unknown option "tll"; did you mean "ttl"?',
    },
    {
      name: 'acquire: null options',
      call: () => client.acquire('k', null as never),
      error: LockArgumentError,
      fragment: 'options must be an object (or left out), got null',
    },
    { name: 'acquire: string options', call: () => client.acquire('k', 'fast' as never), error: LockArgumentError, fragment: 'got "fast"' },
    { name: 'acquire: array options', call: () => client.acquire('k', [1000] as never), error: LockArgumentError, fragment: 'got [1000]' },
    {
      name: 'acquire: autoExtend 1',
      call: () => client.acquire('k', { autoExtend: 1 as never }),
      error: LockArgumentError,
      fragment: 'autoExtend must be true or false, got 1',
    },
    {
      name: "using: autoExtend 'no'",
      call: () => client.using('k', { autoExtend: 'no' as never }, noop),
      error: LockArgumentError,
      fragment: 'autoExtend must be true or false, got "no"',
    },
    {
      name: "using: onLockLost 'retry'",
      call: () => client.using('k', { onLockLost: 'retry' as never }, noop),
      error: LockArgumentError,
      fragment: `onLockLost must be 'continue' or 'throw', got "retry"`,
    },
    { name: 'using: null options', call: () => client.using('k', null as never, noop), error: LockArgumentError, fragment: 'got null' },
    {
      name: 'tryAcquire: { wait } is not its option',
      call: () => client.tryAcquire('k', { wait: 100 } as never),
      error: LockArgumentError,
      fragment: 'unknown option "wait"',
    },
    {
      name: 'restore: { wait } is not its option',
      call: () => client.restore('k', GOOD_TOKEN, { wait: 5 } as never),
      error: LockArgumentError,
      fragment: 'unknown option "wait"',
    },
    {
      name: 'dispatchUnique: { autoExtend } is not its option',
      call: () => client.dispatchUnique('k', { autoExtend: true } as never, noop),
      error: LockArgumentError,
      fragment: 'unknown option "autoExtend"',
    },
    {
      name: 'using: fn not a function',
      call: () => client.using('k', {}, 'nope' as never),
      error: LockArgumentError,
      fragment: 'fn must be a function, got "nope"',
    },
    {
      name: 'dispatchUnique: dispatch not a function',
      call: () => client.dispatchUnique('k', {}, 42 as never),
      error: LockArgumentError,
      fragment: 'dispatch must be a function, got 42',
    },

    // Tokens for restore(): exactly 22 characters of base64url.
    { name: 'restore: token 42', call: () => client.restore('k', 42 as never), error: LockArgumentError, fragment: '42' },
    { name: "restore: token ''", call: () => client.restore('k', ''), error: LockArgumentError, fragment: 'token' },
    {
      name: "restore: token 'short'",
      call: () => client.restore('k', 'short'),
      error: LockArgumentError,
      fragment: '"short" (5 characters)',
    },
    {
      name: 'restore: 23-char token',
      call: () => client.restore('k', `${GOOD_TOKEN}A`),
      error: LockArgumentError,
      fragment: '(23 characters)',
    },
    {
      name: 'restore: token with "!"',
      call: () => client.restore('k', `${GOOD_TOKEN.slice(0, 21)}!`),
      error: LockArgumentError,
      fragment: `"${GOOD_TOKEN.slice(0, 21)}!"`,
    },
    {
      name: 'restore: 5,000-char token',
      call: () => client.restore('k', 'z'.repeat(5000)),
      error: LockArgumentError,
      fragment: '(5000 characters)',
      absent: 'z'.repeat(61),
    },

    // extend() of a held lock: the same bounds as ttl.
    { name: 'extend(0)', setup: held('ext:0'), call: (lock) => lock!.extend(0), error: LockArgumentError, fragment: 'got 0' },
    { name: 'extend(-5)', setup: held('ext:-5'), call: (lock) => lock!.extend(-5), error: LockArgumentError, fragment: 'got -5' },
    {
      name: "extend('100')",
      setup: held('ext:str'),
      call: (lock) => lock!.extend('100' as never),
      error: LockArgumentError,
      fragment: 'got "100"',
    },
    {
      name: 'extend(NaN)',
      setup: held('ext:nan'),
      call: (lock) => lock!.extend(Number.NaN),
      error: LockArgumentError,
      fragment: 'got NaN',
    },
    {
      name: 'extend(2^31)',
      setup: held('ext:big'),
      call: (lock) => lock!.extend(2 ** 31),
      error: LockArgumentError,
      fragment: 'got 2147483648',
    },

    // After close(): nothing more is sent.
    { name: 'closed: isLocked', call: () => closed.isLocked('k'), error: LockShutdownError, fragment: 'shut down' },
    { name: 'closed: forceRelease', call: () => closed.forceRelease('k'), error: LockShutdownError, fragment: 'shut down' },
    { name: 'closed: acquire', call: () => closed.acquire('k'), error: LockShutdownError, fragment: 'shut down' },
    { name: 'closed: restore', call: () => closed.restore('k', GOOD_TOKEN), error: LockShutdownError, fragment: 'shut down' },

    // Decorators, at declaration.
    {
      name: '@WithLock: ttl 0',
      call: () => WithLock('k', 0),
      error: LockArgumentError,
      fragment: '@WithLock(): ttl must be a positive finite number of milliseconds from 10 to 2147483647, got 0.',
    },
    { name: '@WithLock: ttl 2^31', call: () => WithLock('k', 2 ** 31), error: LockArgumentError, fragment: 'got 2147483648' },
    {
      name: '@WithLock: wait -1',
      call: () => WithLock('k', 100, -1),
      error: LockArgumentError,
      fragment: '@WithLock(): wait must be a finite number of milliseconds from 0 to 2147483647, got -1.',
    },
    { name: '@WithLock: wait NaN', call: () => WithLock('k', 100, Number.NaN), error: LockArgumentError, fragment: 'got NaN' },
    {
      name: '@WithLock: { onTimout }',
      call: () => WithLock('k', 100, 0, { onTimout: 'requeue' } as never),
      error: LockArgumentError,
      fragment: 'unknown option "onTimout"; did you mean "onTimeout"?',
    },
    {
      name: '@WithLock: null options',
      call: () => WithLock('k', 100, 0, null as never),
      error: LockArgumentError,
      fragment: 'options must be an object (or left out), got null',
    },
    {
      name: "@WithLock: autoExtend 'no'",
      call: () => WithLock('k', 100, 0, { autoExtend: 'no' as never }),
      error: LockArgumentError,
      fragment: 'autoExtend must be true or false, got "no"',
    },
    {
      name: '@WithLock: requeueDelay 2^31',
      call: () => WithLock('k', 100, 0, { requeueDelay: 2 ** 31 }),
      error: LockArgumentError,
      fragment: 'requeueDelay must be a finite number of milliseconds from 0 to 2147483647, got 2147483648',
    },
    {
      name: "@WithLock: onLockLost 'retry'",
      call: () => WithLock('k', 100, 0, { onLockLost: 'retry' as never }),
      error: LockArgumentError,
      fragment: 'onLockLost',
    },
    {
      name: "@WithLock: onTimeout 'retry'",
      call: () => WithLock('k', 100, 0, { onTimeout: 'retry' as never }),
      error: LockArgumentError,
      fragment: 'onTimeout must be',
    },
    {
      name: '@WithLock: maxHold 5',
      call: () => WithLock('k', 100, 0, { maxHold: 5 }),
      error: LockArgumentError,
      fragment: 'maxHold must be',
    },
    { name: '@WithLock: key }x', call: () => WithLock('}x'), error: LockArgumentError, fragment: '"}x"' },
    { name: '@WithLock: key 42', call: () => WithLock(42 as never), error: LockArgumentError, fragment: 'got number (42)' },
    {
      name: '@WithLock on a getter',
      call: () => {
        class Holder {
          // @ts-expect-error a getter: a compile error too; plain JS or a cast still reaches the runtime check
          @WithLock('k')
          get balance(): number {
            return 1;
          }
        }
        return Holder;
      },
      error: LockArgumentError,
      fragment: '@WithLock() can only decorate a method; Holder.balance is a getter or setter',
    },
    {
      name: '@WithLock on a field',
      call: () => {
        class Holder {
          // @ts-expect-error a method decorator on a field: what plain JS or a cast lets through
          @WithLock('k')
          count = 0;
        }
        return Holder;
      },
      error: LockArgumentError,
      fragment: 'Holder.count is a field',
    },
    {
      name: '@WithLock with no descriptor',
      call: () => WithLock('k')(NoModule.prototype, 'missing', undefined as never),
      error: LockArgumentError,
      fragment: 'NoModule.missing',
    },
    {
      name: '@WithLock on a non-function value',
      call: () => WithLock('k')(NoModule, 'version', { value: 3, writable: true } as never),
      error: LockArgumentError,
      fragment: 'NoModule.version is not a function (number)',
    },
    { name: '@RouteLock: ttl 0', call: () => RouteLock('k', 0), error: LockArgumentError, fragment: '@RouteLock(): ttl must be' },
    {
      name: '@RouteLock: wait NaN',
      call: () => RouteLock('k', 100, Number.NaN),
      error: LockArgumentError,
      fragment: '@RouteLock(): wait must be',
    },
    {
      name: '@RouteLock: key 42',
      call: () => RouteLock(42 as never),
      error: LockArgumentError,
      fragment: '@RouteLock() needs a key string',
    },
    {
      name: '@RouteLock: options',
      call: () => (RouteLock as (...a: unknown[]) => unknown)('k', 100, 0, { onTimeout: 'throw' }),
      error: LockArgumentError,
      fragment: 'fourth argument {"onTimeout":"throw"}',
    },
    {
      name: '@RouteLock on a getter',
      call: () => {
        class Routes {
          // @ts-expect-error a getter: a compile error too; plain JS or a cast still reaches the runtime check
          @RouteLock('k')
          get path(): string {
            return '/';
          }
        }
        return Routes;
      },
      error: LockArgumentError,
      fragment: '@RouteLock() can only decorate a method; Routes.path',
    },

    // Decorators, at call time: the key function's result, before any Redis command.
    {
      name: '@WithLock: key fn returns a Promise',
      call: () => keyed.promiseKey('1'),
      error: LockArgumentError,
      fragment: 'Keyed.promiseKey returned a Promise; key functions must be synchronous',
    },
    {
      name: '@WithLock: async key fn',
      call: () => keyed.asyncKey('1'),
      error: LockArgumentError,
      fragment: 'Keyed.asyncKey returned a Promise',
    },
    {
      name: '@WithLock: key fn returns 42',
      call: () => keyed.numberKey(),
      error: LockArgumentError,
      fragment: 'Keyed.numberKey must return a non-empty string or array of strings, got 42',
    },
    { name: '@WithLock: key fn returns }x', call: () => keyed.braceKey(), error: LockArgumentError, fragment: 'got "}x"' },
    { name: '@WithLock: key fn returns a lone surrogate', call: () => keyed.surrogateKey(), error: LockArgumentError, fragment: '\\ud800' },
    { name: '@WithLock: key fn returns []', call: () => keyed.noKey(), error: LockArgumentError, fragment: 'got []' },
  ];

  it('has a row for every case', () => {
    expect(rows.length).toBeGreaterThanOrEqual(40);
    expect(new Set(rows.map((row) => row.name)).size).toBe(rows.length);
  });

  it.each(rows.map((row) => [row.name, row] as const))('%s', async (_name, row) => {
    const lock = await row.setup?.();
    const ranBefore = keyed.ran;
    const { outcome, sent } = await measure(() => row.call(lock));
    // Whatever a row got wrong (a lock taken, a heartbeat), undo it before the next row.
    const value = 'value' in outcome ? outcome.value : undefined;
    await Promise.allSettled([lock?.release(), (value as Partial<Lock> | undefined)?.release?.()]);

    // One assertion over every fact, so a failing row shows them all (what was thrown, and what reached Redis).
    const error = 'error' in outcome ? (outcome.error as Error) : undefined;
    expect({
      threw: error ? error.name : `nothing (resolved to ${typeof value})`,
      instance: error instanceof row.error,
      message:
        error && error.message.includes(row.fragment) && !(row.absent && error.message.includes(row.absent))
          ? 'as expected'
          : error?.message,
      sent,
      ran: keyed.ran - ranBefore,
    }).toEqual({ threw: row.error.name, instance: true, message: 'as expected', sent: { commands: 0, bytes: 0 }, ran: 0 });
  });

  describe('control: the measurement sees a call that reaches Redis', () => {
    it('isLocked on a good key', async () => {
      const { outcome, sent } = await measure(() => client.isLocked('free'));
      expect(outcome).toEqual({ value: false });
      expect(sent.commands).toBeGreaterThanOrEqual(1);
      expect(sent.bytes).toBeGreaterThan(0);
    });

    it('a @WithLock method with a good key', async () => {
      const { outcome, sent } = await measure(() => keyed.good('7'));
      expect(outcome).toEqual({ value: '7' });
      expect(sent.commands).toBeGreaterThanOrEqual(2); // acquire + release
    });

    it('an extend() with a good ttl', async () => {
      const lock = await client.acquire('ext:good', { ttl: 5000 });
      try {
        const { outcome, sent } = await measure(() => lock.extend(2000));
        expect(outcome).toEqual({ value: undefined });
        expect(sent.commands).toBeGreaterThanOrEqual(1);
      } finally {
        await lock.release();
      }
    });
  });
});
