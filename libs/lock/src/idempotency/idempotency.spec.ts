/**
 * Idempotency without Redis, as users' unit tests run it: on the memory store (the same semantics as
 * on Redis: one run per key, duplicates get the result, records expire), and with a LockService mock
 * (no store: the work runs every time). The Redis behaviour is in test/idempotency*.e2e-spec.ts.
 */
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { setTimeout as sleep } from 'node:timers/promises';
import { LockModule } from '../lock.module.js';
import { LockService } from '../lock.service.js';
import { createLockServiceMock } from '../testing/index.js';
import { IdempotencyService } from './idempotency.service.js';
import { Idempotent } from './idempotent.decorator.js';
import { notJson } from './idempotency.js';

let runs = 0;

@Injectable()
class Orders {
  @Idempotent((id: string) => `order:${id}`, { ttl: 200 })
  async place(id: string): Promise<{ id: string; run: number }> {
    runs++;
    await sleep(20);
    return { id, run: runs };
  }
}

@Module({ imports: [LockModule.forRoot({ store: 'memory' })], providers: [Orders] })
class MemoryApp {}

describe('idempotency on the memory store', () => {
  it('runs once per key, duplicates in flight and later get the result, and the record expires after its ttl', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [MemoryApp] }).compile();
    const app = await moduleRef.init();
    try {
      runs = 0;
      const orders = app.get(Orders);
      const all = await Promise.all([orders.place('a'), orders.place('a'), orders.place('a')]);
      expect(runs).toBe(1);
      expect(all).toEqual([all[0], all[0], all[0]]);
      await expect(orders.place('a')).resolves.toEqual(all[0]);
      await sleep(250);
      await expect(orders.place('a')).resolves.toEqual({ id: 'a', run: 2 });

      const service = app.get(IdempotencyService);
      await expect(service.run('k', { fingerprint: 1 }, () => 'first')).resolves.toBe('first');
      await expect(service.run('k', { fingerprint: 2 }, () => 'second')).rejects.toThrow(/different input/);
    } finally {
      await app.close();
    }
  });

  it('with a LockService mock, idempotent methods and run() simply run every time', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [MemoryApp] })
      .overrideProvider(LockService)
      .useValue(createLockServiceMock())
      .compile();
    const app = await moduleRef.init();
    try {
      runs = 0;
      await app.get(Orders).place('b');
      await app.get(Orders).place('b');
      expect(runs).toBe(2);
      let n = 0;
      await app.get(IdempotencyService).run('k', undefined, () => ++n);
      await app.get(IdempotencyService).run('k', undefined, () => ++n);
      expect(n).toBe(2);
    } finally {
      await app.close();
    }
  });
});

describe('what a stored result may be', () => {
  class Payment {
    constructor(
      readonly id: string,
      readonly amount: number,
    ) {}
  }
  it.each([
    ['plain data', { a: [1, 'x', true, null, { b: 2.5 }] }, undefined],
    ['a class instance (replayed as its own properties)', new Payment('p', 1), undefined],
    ['undefined at the top or in a property (left out)', { a: undefined }, undefined],
    ['a Date', { at: new Date(0) }, ['$.at', 'a Date']],
    ['a Map', [new Map()], ['$[0]', 'a Map']],
    ['NaN', { n: Number.NaN }, ['$.n', 'NaN']],
    ['undefined in an array', [1, undefined], ['$[1]', 'undefined (JSON makes it null)']],
    ['a function', { f: () => 1 }, ['$.f', 'a function']],
    ['an odd property name', { 'a b': 1n }, ['$["a b"]', 'a BigInt']],
  ])('%s', (_name, value, expected) => {
    expect(notJson(value, '$', [])).toEqual(expected);
  });
});
