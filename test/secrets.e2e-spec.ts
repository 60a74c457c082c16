/**
 * No secret in any output (issue "The lease never lies", point 8): with a password in play, every
 * error path we can trigger — invalid URLs, a wrong password, no password, connection refused, a
 * server that never answers, TLS to a plain server, DNS — yields errors whose message, stack, cause
 * and util.inspect() carry no password, and no log line of the Nest logger or event payload does.
 * A control shows that the detector does find a planted secret.
 */
import { createServer, type Server } from 'node:net';
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { NestFactory } from '@nestjs/core';
import { Test, type TestingModule } from '@nestjs/testing';
import { Redis } from 'ioredis';
import {
  LockArgumentError,
  LockModule,
  LockService,
  LockStoreError,
  LockUnavailableError,
  type LockModuleOptions,
} from 'nestjs-redis-lock';
import { redact } from '../libs/lock/src/core/store-errors.js';
import { startRedis, stopAll, type RedisServerHandle } from './helpers/redis-server.js';
import { CapturingLogger } from './fixtures/fault-utils.js';

const PASSWORD = `S3cret-${randomBytes(8).toString('hex')}`;
/** A wrong password is a secret too (often a near miss of the right one). */
const WRONG = `Wr0ng-${randomBytes(8).toString('hex')}`;
const SECRETS = [PASSWORD, WRONG];
const CONNECT_TIMEOUT = 500;
const WAIT = 300;

/** Every text a user could see of `value`: message, stack, String(), each cause, util.inspect at depth 10. */
function renderings(value: unknown): string[] {
  const out = [inspect(value, { depth: 10 }), String(value)];
  let current: unknown = value;
  for (let depth = 0; depth < 10 && current instanceof Error; depth++) {
    out.push(current.message, String(current.stack), String(current.cause), inspect(current.cause, { depth: 10 }));
    try {
      out.push(JSON.stringify(current));
    } catch {
      // circular: inspect above covers it
    }
    current = current.cause;
  }
  return out;
}

/** The secrets found in any rendering of `values` (empty when clean). */
function leaked(...values: unknown[]): string[] {
  const found = new Set<string>();
  for (const value of values) {
    for (const text of renderings(value)) for (const secret of SECRETS) if (text.includes(secret)) found.add(secret);
  }
  return [...found];
}

const failureOf = async (pending: Promise<unknown>): Promise<unknown> => {
  try {
    await pending;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
};

describe('No secret in any output (e2e)', () => {
  let server: RedisServerHandle;
  let hole: Server;
  let holePort: number;
  let closedPort: number;
  const modules: TestingModule[] = [];
  const clients: Redis[] = [];
  const logger = new CapturingLogger();
  /** Every event payload of every LockService booted here. */
  const events: unknown[] = [];

  const urlWith = (password: string, port = server.port, scheme = 'redis') => `${scheme}://default:${password}@127.0.0.1:${port}`;

  /** A testing module with LockModule, logging into `logger`; closed in afterAll even when init fails. */
  const boot = async (options: LockModuleOptions): Promise<{ error?: unknown; locks?: LockService }> => {
    let module: TestingModule;
    try {
      module = await Test.createTestingModule({
        imports: [LockModule.forRoot({ connectTimeout: CONNECT_TIMEOUT, wait: WAIT, keyPrefix: 'secrets-e2e:', ...options })],
      })
        .setLogger(logger)
        .compile();
    } catch (error) {
      return { error };
    }
    modules.push(module);
    try {
      await module.init();
    } catch (error) {
      return { error };
    }
    const locks = module.get(LockService);
    for (const name of ['acquired', 'released', 'lost', 'timeout', 'requeued'] as const) locks.on(name, (payload) => events.push(payload));
    return { locks };
  };

  /** Boot, then (if it booted) one acquire: the first error either gives. */
  const firstError = async (options: LockModuleOptions): Promise<unknown> => {
    const { error, locks } = await boot(options);
    if (error) return error;
    return failureOf(locks!.acquire('k', { wait: WAIT }));
  };

  beforeAll(async () => {
    server = await startRedis({ args: ['--requirepass', PASSWORD] });
    // Accepts and never answers: the handshake (HELLO … AUTH default <password>) goes into the void.
    hole = createServer((socket) => socket.on('data', () => undefined));
    await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', resolve));
    holePort = (hole.address() as { port: number }).port;
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    closedPort = (probe.address() as { port: number }).port;
    await new Promise((resolve) => probe.close(resolve));
  }, 30_000);

  afterAll(async () => {
    await Promise.allSettled(modules.splice(0).map((m) => m.close()));
    for (const c of clients.splice(0)) c.disconnect();
    await new Promise((resolve) => hole?.close(resolve));
    await stopAll();
    // Whatever was logged or emitted across all rows.
    expect(leaked(...logger.lines, ...events)).toEqual([]);
  }, 30_000);

  describe('the detector', () => {
    it('finds a planted secret in a message, a stack, a nested cause and ReplyError-style command args', () => {
      const planted = Object.assign(new Error('ReplyError: WRONGPASS'), {
        command: { name: 'hello', args: ['3', 'AUTH', 'default', WRONG] },
      });
      expect(leaked(planted)).toEqual([WRONG]);
      expect(leaked(new Error('wrapper', { cause: new Error('deep', { cause: { url: urlWith(PASSWORD) } }) }))).toEqual([PASSWORD]);
      expect(leaked(`warn connecting to ${urlWith(PASSWORD)}`)).toEqual([PASSWORD]);
      expect(leaked(new Error('clean'))).toEqual([]);
    });

    it('redact() removes them by their shape (URL user info, AUTH/HELLO arguments), not only by value', () => {
      const unregistered = `Unreg-${randomBytes(8).toString('hex')}`;
      const planted = Object.assign(new Error(`connect to redis://default:${unregistered}@host:1/0 failed`), {
        command: { name: 'hello', args: ['3', 'AUTH', 'default', unregistered] },
      });
      const safe = redact(planted);
      expect(renderings(safe).some((text) => text.includes(unregistered))).toBe(false);
      expect(safe.message).toContain('redis://default:***@host:1/0');
      expect((safe as unknown as { command: { args: string[] } }).command.args).toEqual(['3', 'AUTH', 'default', '***']);
      expect(renderings(planted).some((text) => text.includes(unregistered))).toBe(true);
    });
  });

  describe('invalid URLs and options with a password: the boot error shows redis://user:***@host', () => {
    const badUrls = () => [
      `redis://admin:${PASSWORD}@127.0.0.1:99999`,
      `redis://admin:${PASSWORD}@127.0.0.1:6390/not-a-db`,
      `http://admin:${PASSWORD}@127.0.0.1:6390`,
      `redis://admin:${PASSWORD}#fragment@/`,
      `redis://admin:${PASSWORD}@`,
      `redis://127.0.0.1:6390/x?password=${PASSWORD}`,
      `redis://${PASSWORD}@127.0.0.1:6390/db`,
    ];

    it('through a testing module: LockArgumentError, no secret anywhere', async () => {
      for (const url of badUrls()) {
        const { error } = await boot({ redis: url });
        expect(error).toBeInstanceOf(LockArgumentError);
        expect(leaked(error)).toEqual([]);
      }
      const { error } = await boot({ redis: `redis://admin:${PASSWORD}@127.0.0.1:6390/not-a-db` });
      expect((error as Error).message).toContain('redis://admin:***@127.0.0.1:6390/not-a-db');
    });

    it('through NestFactory: the boot failure logged by Nest carries no secret', async () => {
      for (const url of badUrls()) {
        const captured = new CapturingLogger();
        const error = await failureOf(
          NestFactory.createApplicationContext(LockModule.forRoot({ redis: url }), { logger: captured, abortOnError: false }),
        );
        expect(error).toBeInstanceOf(LockArgumentError);
        expect(captured.lines.length).toBeGreaterThan(0);
        expect(leaked(error, ...captured.lines)).toEqual([]);
        logger.lines.push(...captured.lines);
      }
    });

    it('an unknown option or a bad value holding a password is not echoed', async () => {
      const rows: LockModuleOptions[] = [
        { redis: server.url, redisPassword: PASSWORD } as LockModuleOptions,
        { redis: server.url, ttl: { password: PASSWORD } } as unknown as LockModuleOptions,
        { redis: { host: '127.0.0.1', password: PASSWORD, db: -1 } },
      ];
      for (const options of rows) {
        const { error } = await boot(options);
        expect(error).toBeInstanceOf(LockArgumentError);
        expect(leaked(error)).toEqual([]);
      }
    });
  });

  describe('connection failures with a password in play', () => {
    it('a wrong password → LockStoreError AUTH; its cause (HELLO … AUTH) is a redacted copy', async () => {
      const error = await firstError({ redis: urlWith(WRONG) });
      expect(leaked(error)).toEqual([]);
      expect(error).toBeInstanceOf(LockStoreError);
      expect((error as LockStoreError).code).toBe('AUTH');
      const command = ((error as Error).cause as { command?: { name: string; args: unknown[] } } | undefined)?.command;
      if (command) expect(command.args).not.toContain(WRONG);
    });

    it('no password (NOAUTH) → LockStoreError AUTH', async () => {
      const error = await firstError({ redis: server.url });
      expect(leaked(error)).toEqual([]);
      expect(error).toBeInstanceOf(LockStoreError);
      expect((error as LockStoreError).code).toBe('AUTH');
    });

    it('connection refused → LockUnavailableError that names ECONNREFUSED', async () => {
      const error = await firstError({ redis: urlWith(PASSWORD, closedPort) });
      expect(leaked(error)).toEqual([]);
      expect(error).toBeInstanceOf(LockUnavailableError);
      expect((error as Error).message).toMatch(/ECONNREFUSED/);
    });

    it('a server that accepts and never answers → LockUnavailableError "no answer", no secret', async () => {
      const error = await firstError({ redis: urlWith(PASSWORD, holePort) });
      expect(leaked(error)).toEqual([]);
      expect(error).toBeInstanceOf(LockUnavailableError);
      expect((error as Error).message).toMatch(/no answer/);
      // What the connection knows: it was opened, but the server never completed the handshake.
      expect((error as Error).message).toMatch(/did not become ready/);
    });

    it('rediss:// to a plain server → LockUnavailableError naming the TLS failure', async () => {
      const error = await firstError({ redis: urlWith(PASSWORD, server.port, 'rediss') });
      expect(leaked(error)).toEqual([]);
      expect(error).toBeInstanceOf(LockUnavailableError);
      expect((error as Error).message).toMatch(/TLS|ETIMEDOUT|SSL|EPROTO/);
    });

    it('a host that does not resolve → LockUnavailableError naming the DNS failure', async () => {
      const error = await firstError({ redis: `redis://default:${PASSWORD}@no-such-host.invalid:6379` });
      expect(leaked(error)).toEqual([]);
      expect(error).toBeInstanceOf(LockUnavailableError);
      expect((error as Error).message).toMatch(/ENOTFOUND|EAI_AGAIN|getaddrinfo/);
    });

    it('NestFactory with a wrong password (a client of ours): the logged boot failure carries no secret', async () => {
      const client = new Redis(urlWith(WRONG), { maxRetriesPerRequest: 1, connectTimeout: CONNECT_TIMEOUT, disconnectTimeout: 100 });
      client.on('error', () => undefined);
      clients.push(client);
      const captured = new CapturingLogger();
      const outcome = await NestFactory.createApplicationContext(LockModule.forRoot({ redis: client, connectTimeout: CONNECT_TIMEOUT }), {
        logger: captured,
        abortOnError: false,
      }).then(
        async (app) => {
          const error = await failureOf(app.get(LockService).acquire('k', { wait: WAIT }));
          await app.close();
          return error;
        },
        (error: unknown) => error,
      );
      expect(leaked(outcome, ...captured.lines)).toEqual([]);
      expect(outcome).toBeInstanceOf(LockStoreError);
      logger.lines.push(...captured.lines);
    });
  });

  it('a working lock with a password: event payloads and logs carry no secret', async () => {
    const { locks, error } = await boot({ redis: urlWith(PASSWORD) });
    expect(error).toBeUndefined();
    const lock = await locks!.acquire('fine', { ttl: 5_000 });
    const busy = await failureOf(locks!.acquire('fine', { wait: 50 }));
    await lock.release();
    expect(leaked(busy, ...events, ...logger.lines)).toEqual([]);
    expect(events.length).toBeGreaterThan(0);
  });
});
