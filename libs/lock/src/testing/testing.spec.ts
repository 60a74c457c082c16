/**
 * "Testing code that uses locks" (docs/testing.md), both paths, without Redis: a LockService replaced
 * with overrideProvider (the decorated methods call the replacement), and the memory store.
 */
import 'reflect-metadata';
import { Controller, Injectable, Module, Param, Post, type INestApplication } from '@nestjs/common';
import { jest } from '@jest/globals';
import { Test, type TestingModule } from '@nestjs/testing';
import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { currentLock } from '../core/context.js';
import { RouteLock } from '../decorators/route-lock.decorator.js';
import { WithLock } from '../decorators/with-lock.decorator.js';
import { LockNotInitializedError, LockTimeoutError } from '../core/errors.js';
import { LockModule } from '../lock.module.js';
import { LockService } from '../lock.service.js';
import { createLockServiceMock } from './index.js';

@Injectable()
class Accounts {
  @WithLock({ key: (from: string, to: string) => [`account:${from}`, `account:${to}`], ttl: 5000, wait: 0 })
  async transfer(from: string, to: string, amount: number): Promise<string> {
    return `${from}->${to}:${amount}:${currentLock()?.keys.join('+')}`;
  }

  @WithLock((id: string) => `account:${id}`, 5000, 0, { onTimeout: (_error, id: string) => `busy:${id}` })
  async credit(id: string): Promise<string> {
    return `credited:${id}`;
  }

  @WithLock(
    (job: { id: string; data: { id: string }; moveToDelayed(at: number, token?: string): Promise<void> }) => `job:${job.data.id}`,
    5000,
    0,
    {
      onTimeout: 'requeue',
    },
  )
  async process(
    job: { id: string; data: { id: string }; moveToDelayed(at: number, token?: string): Promise<void> },
    _token?: string,
  ): Promise<string> {
    return `processed:${job.data.id}`;
  }

  @WithLock('counter', 5000, 5000)
  async slow(log: string[], tag: string): Promise<void> {
    log.push(`start:${tag}`);
    await sleep(30);
    log.push(`end:${tag}`);
  }
}

@Controller('accounts')
class AccountsController {
  @Post(':id/adjust')
  @RouteLock({ key: (req: { params: { id: string } }) => `account:${req.params.id}`, ttl: 5000, wait: 0 })
  async adjust(@Param('id') id: string): Promise<{ id: string }> {
    return { id };
  }
}

@Module({
  imports: [LockModule.forRoot({ redis: 'redis://127.0.0.1:1', connectTimeout: 50 })],
  providers: [Accounts],
  controllers: [AccountsController],
})
class AppModule {}

describe('overrideProvider(LockService): decorated methods call the replacement', () => {
  let moduleRef: TestingModule | undefined;
  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
  });

  it('@WithLock calls the mock’s using() with the keys and options, after compile() alone (no init)', async () => {
    const locks = createLockServiceMock();
    const using = jest.spyOn(locks, 'using');
    moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(LockService)
      .useValue(locks)
      .compile();
    expect(moduleRef.get(LockService)).toBe(locks);
    expect(await moduleRef.get(Accounts).transfer('a', 'b', 10)).toBe('a->b:10:account:a+account:b');
    expect(using).toHaveBeenCalledTimes(1);
    expect(using).toHaveBeenCalledWith(['account:a', 'account:b'], expect.objectContaining({ ttl: 5000, wait: 0 }), expect.any(Function));
  });

  it('a busy key on the mock: LockTimeoutError, or what onTimeout says (function, requeue)', async () => {
    const locks = createLockServiceMock({ busy: ['account:a', 'account:7', 'job:9'] });
    moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(LockService)
      .useValue(locks)
      .compile();
    const accounts = moduleRef.get(Accounts);
    await expect(accounts.transfer('a', 'b', 1)).rejects.toBeInstanceOf(LockTimeoutError);
    expect(await accounts.credit('7')).toBe('busy:7');
    const moves: number[] = [];
    const job = { id: '1', data: { id: '9' }, moveToDelayed: async (at: number) => void moves.push(at) };
    await expect(accounts.process(job, 'tk')).rejects.toMatchObject({ name: 'DelayedError' });
    expect(moves).toHaveLength(1);
    locks.busy.clear();
    expect(await accounts.credit('7')).toBe('credited:7');
  });

  it('a hand-written mock with only using() works too', async () => {
    const calls: unknown[] = [];
    const locks = { using: jest.fn(async (key: unknown, _options: unknown, fn: () => unknown) => (calls.push(key), fn())) };
    moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(LockService)
      .useValue(locks)
      .compile();
    expect(await moduleRef.get(Accounts).credit('3')).toBe('credited:3');
    expect(calls).toEqual(['account:3']);
  });

  it('@RouteLock over HTTP calls the mock; a busy key answers 423', async () => {
    const locks = createLockServiceMock();
    moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(LockService)
      .useValue(locks)
      .compile();
    const app: INestApplication = moduleRef.createNestApplication({ logger: false });
    await app.init();
    await request(app.getHttpServer()).post('/accounts/5/adjust').expect(201, { id: '5' });
    locks.busy.add('account:5');
    const res = await request(app.getHttpServer()).post('/accounts/5/adjust').expect(423);
    expect(res.headers['retry-after']).toBe('1');
    await app.close();
  });

  it('two testing modules in one process each call their own mock', async () => {
    const [first, second] = [createLockServiceMock(), createLockServiceMock({ busy: ['account:1'] })];
    const refs = await Promise.all(
      [first, second].map((mock) =>
        Test.createTestingModule({ imports: [AppModule] })
          .overrideProvider(LockService)
          .useValue(mock)
          .compile(),
      ),
    );
    try {
      expect(await refs[0]!.get(Accounts).credit('1')).toBe('credited:1');
      expect(await refs[1]!.get(Accounts).credit('1')).toBe('busy:1');
      // An instance neither created is ambiguous with two apps: the message says so.
      await expect(new Accounts().credit('1')).rejects.toBeInstanceOf(LockNotInitializedError);
    } finally {
      await Promise.all(refs.map((r) => r.close()));
    }
    await expect(new Accounts().credit('1')).rejects.toThrow('Import LockModule.forRoot()');
  });
});

describe("LockModule.forRoot({ store: 'memory' }): real locks, no Redis", () => {
  let moduleRef: TestingModule;
  beforeAll(async () => {
    moduleRef = await Test.createTestingModule({ imports: [LockModule.forRoot({ store: 'memory' })], providers: [Accounts] }).compile();
    await moduleRef.init();
  });
  afterAll(() => moduleRef.close());

  it('excludes concurrent calls on one key', async () => {
    const log: string[] = [];
    const accounts = moduleRef.get(Accounts);
    await Promise.all([accounts.slow(log, 'a'), accounts.slow(log, 'b')]);
    // One after the other, never interleaved.
    expect([['start:a', 'end:a', 'start:b', 'end:b'].join(), ['start:b', 'end:b', 'start:a', 'end:a'].join()]).toContain(log.join());
  });

  it('a key held through the real LockService makes the method time out', async () => {
    const held = await moduleRef.get(LockService).acquire('account:a', { ttl: 5000 });
    try {
      await expect(moduleRef.get(Accounts).transfer('a', 'b', 1)).rejects.toBeInstanceOf(LockTimeoutError);
      expect(await moduleRef.get(Accounts).credit('a')).toBe('busy:a');
    } finally {
      await held.release();
    }
    expect(await moduleRef.get(Accounts).transfer('a', 'b', 1)).toBe('a->b:1:account:a+account:b');
  });
});

describe('LockService internals are not public', () => {
  it('has no client or owns property, enumerable or not', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [LockModule.forRoot({ store: 'memory' })] }).compile();
    try {
      const service = moduleRef.get(LockService);
      expect('client' in service).toBe(false);
      expect('owns' in service).toBe(false);
      expect(Object.keys(service)).toEqual([]);
    } finally {
      await moduleRef.close();
    }
  });
});
