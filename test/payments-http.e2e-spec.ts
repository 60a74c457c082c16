/**
 * The payments sample over HTTP, against a real Redis (REDIS_URL): accounts, payments through
 * the queue, the 423 path of @RouteLock, validation, deadlock-free transfers, Fastify.
 */
import type { INestApplication } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Redis } from 'ioredis';
import { LockService } from 'nestjs-redis-lock';
import request from 'supertest';
import { createHttpApp, dropKeys, inPool, queueOf, testConfig, waitForJobs } from '../apps/payments/test/e2e-fixtures.js';
import type { PaymentsConfig } from '../apps/payments/src/config.js';

describe('payments HTTP API (e2e)', () => {
  let config: PaymentsConfig;
  let app: INestApplication;
  let redis: Redis;
  const http = () => request(app.getHttpServer());

  const open = async (id: string, initialBalance: number) => {
    await http().post('/accounts').send({ id, initialBalance }).expect(201, { id, balance: initialBalance });
  };
  const balance = async (id: string): Promise<number> => (await http().get(`/accounts/${id}`).expect(200)).body.balance;

  /** Every key of this app (lock keys and the fencing counter included) with its serialised value. */
  const snapshot = async (): Promise<Map<string, string>> => {
    const keys = [...(await redis.keys(`${config.keyPrefix}*`)), ...(await redis.keys(`${config.queuePrefix}:*`))].sort();
    return new Map(
      await Promise.all(keys.map(async (key) => [key, (await redis.dumpBuffer(key))?.toString('hex') ?? ''] as [string, string])),
    );
  };

  beforeAll(async () => {
    config = testConfig();
    app = await createHttpApp(config);
    redis = new Redis(config.redisUrl);
  });

  afterAll(async () => {
    await app?.close();
    if (config) await dropKeys(config);
    await redis?.quit();
  });

  it('opens accounts and reads balances; 409 for a taken id, 404 with a clear message for an unknown one', async () => {
    await open('alice', 1_000);
    expect(await balance('alice')).toBe(1_000);
    const generated = await http().post('/accounts').send({ initialBalance: 0 }).expect(201);
    expect(generated.body).toEqual({ id: expect.any(String), balance: 0 });

    const taken = await http().post('/accounts').send({ id: 'alice', initialBalance: 5 }).expect(409);
    expect(taken.body.message).toBe('Account "alice" already exists');
    expect(await balance('alice')).toBe(1_000);

    const unknown = await http().get('/accounts/nobody').expect(404);
    expect(unknown.body.message).toBe('Account "nobody" not found');
    const payment = await http().post('/payments').send({ accountId: 'nobody', amount: 5 }).expect(404);
    expect(payment.body.message).toBe('Account "nobody" not found');
  });

  it('applies concurrent payments posted through the API exactly', async () => {
    await open('pay-1', 0);
    await open('pay-2', 500);
    const payments = Array.from({ length: 120 }, (_, i) => ({ accountId: i % 2 ? 'pay-1' : 'pay-2', amount: 1 + ((i * 37) % 250) }));
    const before = (await queueOf(app).getJobCounts('completed', 'failed')) as { completed: number; failed: number };

    const accepted = await inPool(20, payments, (body) => http().post('/payments').send(body).expect(202));
    expect(accepted.every((res) => res.body.status === 'queued')).toBe(true);
    const after = await waitForJobs(queueOf(app), before.completed + before.failed + payments.length);

    expect(after.failed).toBe(before.failed);
    const expected = (id: string, start: number) =>
      start + payments.filter((p) => p.accountId === id).reduce((sum, p) => sum + p.amount, 0);
    expect(await balance('pay-1')).toBe(expected('pay-1', 0));
    expect(await balance('pay-2')).toBe(expected('pay-2', 500));

    const { paymentId } = accepted[0]!.body;
    const status = await http().get(`/payments/${paymentId}`).expect(200);
    expect(status.body).toMatchObject({ paymentId, state: 'completed', result: { outcome: 'applied' } });
  });

  it('answers 423 with Retry-After on the adjust route while the account is locked, then applies it', async () => {
    await open('busy', 1_000);
    const lock = await app.get(LockService).acquire('account:busy', { ttl: 10_000, wait: 0 });
    try {
      const locked = await http().post('/accounts/busy/adjust').send({ amount: 100 }).expect(423);
      expect(locked.headers['retry-after']).toMatch(/^\d+$/);
      expect(locked.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(locked.body).toMatchObject({ status: 423 });
      expect(await balance('busy')).toBe(1_000);
    } finally {
      await lock.release();
    }
    await http().post('/accounts/busy/adjust').send({ amount: -250 }).expect(200, { id: 'busy', balance: 750 });
  });

  it('serialises concurrent adjustments of one account (no lost update)', async () => {
    await open('adjusted', 0);
    const amounts = Array.from({ length: 12 }, (_, i) => (i + 1) * 10);
    const answers = await Promise.all(amounts.map((amount) => http().post('/accounts/adjusted/adjust').send({ amount })));
    expect(answers.map((res) => res.status)).toEqual(amounts.map(() => 200));
    expect(await balance('adjusted')).toBe(amounts.reduce((a, b) => a + b, 0));
    const overdraft = await http().post('/accounts/adjusted/adjust').send({ amount: -1_000_000 }).expect(422);
    expect(overdraft.body.message).toMatch(/not enough/);
  });

  it('rejects bad input with 400 and a message naming the field, and changes nothing', async () => {
    await open('strict', 1_000);
    await open('strict-2', 0);
    const before = await snapshot();
    const cases: [string, unknown, RegExp][] = [
      ['/payments', { amount: 10 }, /accountId must/],
      ['/payments', { accountId: 'strict' }, /amount must be an integer/],
      ['/payments', { accountId: 'strict', amount: -5 }, /amount must not be less than 1/],
      ['/payments', { accountId: 'strict', amount: 'ten' }, /amount must be an integer/],
      ['/payments', { accountId: 'strict', amount: '10' }, /amount must be an integer/],
      ['/payments', { accountId: 'strict', amount: 1.5 }, /amount must be an integer/],
      ['/payments', { accountId: 'strict', amount: 10, extra: true }, /property extra should not exist/],
      ['/accounts', { id: 'new-one' }, /initialBalance must be an integer/],
      ['/accounts', { id: 'new-one', initialBalance: -1 }, /initialBalance must not be less than 0/],
      ['/accounts', { id: 'bad id!', initialBalance: 1 }, /id must be 1-64 letters/],
      ['/transfers', { from: 'strict', to: 'strict-2' }, /amount must be an integer/],
      ['/transfers', { from: 'strict', to: 'strict-2', amount: 0 }, /amount must not be less than 1/],
      ['/transfers', { from: 'strict', to: 'strict', amount: 5 }, /from and to must be different accounts/],
      // @RouteLock takes its lock after the pipes: a refused request does not even touch the fencing counter.
      ['/accounts/strict/adjust', { amount: 0 }, /amount must not be 0/],
      ['/accounts/strict/adjust', { amount: 2.5 }, /amount must be an integer/],
    ];
    for (const [path, body, message] of cases) {
      const res = await http()
        .post(path)
        .send(body as object);
      expect({ path, body, status: res.status }).toEqual({ path, body, status: 400 });
      expect([res.body.message].flat().join('; ')).toMatch(message);
    }
    expect(await snapshot()).toEqual(before);
  });

  it('runs A->B and B->A transfers concurrently without deadlock, conserving the total', async () => {
    await open('acct-a', 10_000);
    await open('acct-b', 10_000);
    const transfers = Array.from({ length: 40 }, (_, i) =>
      i % 2 ? { from: 'acct-a', to: 'acct-b', amount: 100 } : { from: 'acct-b', to: 'acct-a', amount: 150 },
    );
    const answers = await Promise.all(transfers.map((body) => http().post('/transfers').send(body)));
    expect(answers.map((res) => res.status)).toEqual(transfers.map(() => 200));
    expect(await balance('acct-a')).toBe(10_000 - 20 * 100 + 20 * 150);
    expect(await balance('acct-b')).toBe(10_000 + 20 * 100 - 20 * 150);

    const refused = await http().post('/transfers').send({ from: 'acct-a', to: 'acct-b', amount: 1_000_000 }).expect(422);
    expect(refused.body.message).toBe('Account "acct-a" has 11000 cents, which is not enough to debit 1000000 cents');
    await http().post('/transfers').send({ from: 'acct-a', to: 'ghost', amount: 1 }).expect(404);
    expect((await balance('acct-a')) + (await balance('acct-b'))).toBe(20_000);
  });
});

describe('payments HTTP API on Fastify (e2e)', () => {
  it('boots and serves the account routes, including the locked one', async () => {
    const config = testConfig({ role: 'api' });
    const app = await createHttpApp(config, new FastifyAdapter());
    try {
      await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
      await request(app.getHttpServer()).post('/accounts').send({ id: 'fast', initialBalance: 10 }).expect(201);
      await request(app.getHttpServer()).post('/accounts/fast/adjust').send({ amount: 5 }).expect(200, { id: 'fast', balance: 15 });
      const res = await request(app.getHttpServer()).get('/accounts/fast').expect(200);
      expect(res.body).toEqual({ id: 'fast', balance: 15 });
    } finally {
      await app.close();
      await dropKeys(config);
    }
  });
});
