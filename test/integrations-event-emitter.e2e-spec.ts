/**
 * nestjs-redis-lock/event-emitter on a real Redis: lock events re-emitted through the app's EventEmitter2
 * as `lock.<event>`, so `@OnEvent('lock.acquired')` handlers run; nothing after app.close().
 */
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { LockModule, LockNotInitializedError, LockService, type LockEvents } from 'nestjs-redis-lock';
import { LOCK_EVENT_NAMES, LockEventEmitterModule } from 'nestjs-redis-lock/event-emitter';
import { dropKeys, randomPrefix, redisUrl, waitFor } from './fixtures/lock-e2e-utils.js';

@Injectable()
class LockEventsSeen {
  readonly acquired: LockEvents['acquired'][0][] = [];
  readonly released: LockEvents['released'][0][] = [];
  readonly lost: LockEvents['lost'][0][] = [];

  @OnEvent('lock.acquired')
  onAcquired(event: LockEvents['acquired'][0]): void {
    this.acquired.push(event);
  }

  @OnEvent('lock.released')
  onReleased(event: LockEvents['released'][0]): void {
    this.released.push(event);
  }

  @OnEvent('lock.lost')
  onLost(event: LockEvents['lost'][0]): void {
    this.lost.push(event);
  }
}

describe('@nestjs/event-emitter relay (e2e)', () => {
  const keyPrefix = randomPrefix('events');
  let app: INestApplicationContext | undefined;

  afterAll(async () => {
    await app?.close();
    await dropKeys(redisUrl(), keyPrefix);
  });

  it('re-emits lock events as lock.<event>: @OnEvent handlers get the payload', async () => {
    @Module({
      imports: [EventEmitterModule.forRoot(), LockModule.forRoot({ redis: redisUrl(), keyPrefix }), LockEventEmitterModule.forRoot()],
      providers: [LockEventsSeen],
    })
    class AppModule {}
    app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    const seen = app.get(LockEventsSeen);
    const locks = app.get(LockService);

    const fencingToken = await locks.using('e:one', { label: 'Payments.submit' }, (lock) => lock.fencingToken);
    expect(seen.acquired).toEqual([
      expect.objectContaining({
        keys: ['e:one'],
        label: 'Payments.submit',
        fencingToken,
        token: expect.any(String),
        waited: expect.any(Number),
      }),
    ]);
    expect(seen.released).toEqual([expect.objectContaining({ keys: ['e:one'], held: true, label: 'Payments.submit' })]);

    const doomed = await locks.acquire('e:lost', { ttl: 100, autoExtend: false });
    await waitFor('lock.lost', async () => seen.lost.length === 1, 5_000);
    expect(seen.lost[0]).toMatchObject({ keys: ['e:lost'], token: doomed.token });
    await doomed.release();

    expect(LOCK_EVENT_NAMES).toMatchObject({ acquired: 'lock.acquired', lost: 'lock.lost', idempotent: 'lock.idempotent' });
  });

  it('without EventEmitterModule the boot fails with an error that says what to import', async () => {
    @Module({ imports: [LockModule.forRoot({ store: 'memory' }), LockEventEmitterModule.forRoot()] })
    class NoEmitterModule {}
    const moduleRef = await Test.createTestingModule({ imports: [NoEmitterModule] }).compile();
    const failed = await moduleRef.init().catch((error: unknown) => error);
    await moduleRef.close();
    expect(failed).toBeInstanceOf(LockNotInitializedError);
    expect((failed as Error).message).toContain('EventEmitterModule.forRoot()');
  });
});
