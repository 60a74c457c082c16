/**
 * The payments sample's idempotency and observability, against a real Redis (REDIS_URL): a client retry
 * of `POST /payments` with the same Idempotency-Key, webhook events delivered more than once, a payment
 * job delivered twice, `GET /metrics` and `GET /health` (down while its Redis is stopped), on Express and
 * Fastify, and a worker's own metrics listener.
 */
import type { INestApplication } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { createHttpApp, createWorkerApp, dropKeys, queueOf, testConfig, waitFor, waitForJobs } from '../apps/payments/test/e2e-fixtures.js';
import type { PaymentsConfig } from '../apps/payments/src/config.js';
import { MetricsServer } from '../apps/payments/src/observability/metrics-server.js';
import type { PaymentJobData, PaymentJobResult } from '../apps/payments/src/payments/payments.dto.js';
import { REDIS } from '../apps/payments/src/redis.module.js';
import { startRedis } from './helpers/redis-server.js';

/** The value of one series in Prometheus text, e.g. `lock_requeues_total{label="X"}`; 0 when absent. */
function series(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const own = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(([, k, v]) => [k!, v!]));
    if (Object.entries(labels).every(([k, v]) => own[k] === v)) total += Number(match[3]);
  }
  return total;
}

const platforms: [string, () => FastifyAdapter | undefined][] = [
  ['Express', () => undefined],
  ['Fastify', () => new FastifyAdapter()],
];

describe.each(platforms)('payments idempotency and observability on %s (e2e)', (_platform, adapter) => {
  let config: PaymentsConfig;
  let app: INestApplication;
  const http = () => request(app.getHttpServer());
  const balance = async (id: string): Promise<number> => (await http().get(`/accounts/${id}`).expect(200)).body.balance;
  const jobsTotal = async (): Promise<number> => Object.values(await queueOf(app).getJobCounts()).reduce((sum, n) => sum + (n ?? 0), 0);
  /** Waits until every job of the queue has finished. */
  const drained = async () => waitForJobs(queueOf(app), await jobsTotal());

  beforeAll(async () => {
    config = testConfig(); // role 'all': the API and a worker in this app
    app = await createHttpApp(config, adapter());
    if (app.getHttpAdapter().getType() === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
  });

  afterAll(async () => {
    await app?.close();
    if (config) await dropKeys(config);
  });

  it('POST /payments: a retry with the same Idempotency-Key gets the first answer and queues nothing', async () => {
    await http().post('/accounts').send({ id: 'retry', initialBalance: 1_000 }).expect(201);
    const body = { accountId: 'retry', amount: 250, reference: 'order-1' };
    const before = await jobsTotal();

    const first = await http().post('/payments').set('Idempotency-Key', 'key-1').send(body).expect(202);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    const retry = await http().post('/payments').set('Idempotency-Key', 'key-1').send(body).expect(202);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.body).toEqual(first.body);
    // Concurrent duplicates (a client that timed out and retried while the first was still running) too.
    const concurrent = await Promise.all(
      Array.from({ length: 4 }, () => http().post('/payments').set('Idempotency-Key', 'key-2').send(body)),
    );
    expect(concurrent.map((res) => res.status)).toEqual([202, 202, 202, 202]);
    expect(new Set(concurrent.map((res) => res.body.paymentId)).size).toBe(1);

    expect(await jobsTotal()).toBe(before + 2);
    await drained();
    expect(await balance('retry')).toBe(1_000 + 2 * 250);
  });

  it('POST /payments: the same key with another body is 422 and queues nothing; without a key every post is a payment', async () => {
    await http().post('/accounts').send({ id: 'reuse', initialBalance: 0 }).expect(201);
    await http().post('/payments').set('Idempotency-Key', 'key-3').send({ accountId: 'reuse', amount: 10 }).expect(202);
    const before = await jobsTotal();

    const reused = await http().post('/payments').set('Idempotency-Key', 'key-3').send({ accountId: 'reuse', amount: 11 }).expect(422);
    expect(reused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(reused.body).toMatchObject({ status: 422, detail: expect.stringMatching(/Idempotency-Key/) });
    expect(await jobsTotal()).toBe(before);

    // The header is optional (backward compatible): two posts without it are two payments.
    const a = await http().post('/payments').send({ accountId: 'reuse', amount: 5 }).expect(202);
    const b = await http().post('/payments').send({ accountId: 'reuse', amount: 5 }).expect(202);
    expect(a.body.paymentId).not.toBe(b.body.paymentId);
    expect(await jobsTotal()).toBe(before + 2);
    await drained();
    expect(await balance('reuse')).toBe(20);
  });

  it('POST /payments: a refused request stores nothing, so its retry with the same key runs', async () => {
    const body = { accountId: 'late', amount: 40 };
    await http().post('/payments').set('Idempotency-Key', 'key-4').send(body).expect(404);
    await http().post('/payments').set('Idempotency-Key', 'key-5').send({ accountId: 'late' }).expect(400);
    await http().post('/accounts').send({ id: 'late', initialBalance: 0 }).expect(201);
    const retry = await http().post('/payments').set('Idempotency-Key', 'key-4').send(body).expect(202);
    expect(retry.headers['idempotent-replayed']).toBeUndefined();
    await drained();
    expect(await balance('late')).toBe(40);
  });

  it('POST /webhooks/payments: an event delivered several times is applied once, every delivery gets the first answer', async () => {
    await http().post('/accounts').send({ id: 'hooked', initialBalance: 100 }).expect(201);
    const event = { eventId: 'evt_1', accountId: 'hooked', amount: 70 };
    const before = await jobsTotal();

    const deliveries = await Promise.all(Array.from({ length: 3 }, () => http().post('/webhooks/payments').send(event)));
    const late = await http().post('/webhooks/payments').send(event).expect(200);
    const answers = [...deliveries, late];
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 200]);
    expect(answers.map((res) => res.body)).toEqual(answers.map(() => ({ ...answers[0]!.body })));
    expect(answers[0]!.body).toMatchObject({ eventId: 'evt_1', accountId: 'hooked', amount: 70, status: 'queued' });
    expect(await jobsTotal()).toBe(before + 1);

    const changed = await http()
      .post('/webhooks/payments')
      .send({ ...event, amount: 71 })
      .expect(422);
    expect(changed.body.message).toMatch(/Event "evt_1" was delivered before/);
    await drained();
    expect(await balance('hooked')).toBe(170);
  });

  it('POST /webhooks/payments: an event for an unknown account is refused and applied on a later delivery', async () => {
    const event = { eventId: 'evt_2', accountId: 'opened-later', amount: 30 };
    await http().post('/webhooks/payments').send(event).expect(404);
    await http().post('/webhooks/payments').send({ eventId: 'evt 3', accountId: 'x', amount: 1 }).expect(400);
    await http().post('/accounts').send({ id: 'opened-later', initialBalance: 0 }).expect(201);
    await http().post('/webhooks/payments').send(event).expect(200);
    await drained();
    expect(await balance('opened-later')).toBe(30);
  });

  it('a payment job delivered twice (another job id, same payment) returns the first result and applies once', async () => {
    await http().post('/accounts').send({ id: 'twice', initialBalance: 0 }).expect(201);
    const { paymentId } = (await http().post('/payments').send({ accountId: 'twice', amount: 90 }).expect(202)).body;
    const queue = queueOf(app);
    await waitFor('the first job', async () => (await queue.getJobState(paymentId)) === 'completed');
    const first = (await queue.getJob(paymentId))!.returnvalue as PaymentJobResult;

    const data: PaymentJobData = { paymentId, accountId: 'twice', amount: 90 };
    const copy = await queue.add('payment', data, { jobId: `${paymentId}-again` });
    await waitFor('the duplicate job', async () => (await queue.getJobState(copy.id!)) === 'completed');
    expect((await queue.getJob(copy.id!))!.returnvalue).toEqual(first);
    expect(first.outcome).toBe('applied');
    expect(await balance('twice')).toBe(90);

    const metrics = (await http().get('/metrics').expect(200)).text;
    expect(series(metrics, 'lock_idempotent_calls_total', { label: 'payment-job', outcome: 'replayed' })).toBe(1);
  });

  it('GET /metrics: Prometheus text with the lock and idempotency figures of this process', async () => {
    await drained();
    const res = await http().get('/metrics').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = res.text;
    // The earlier tests of this app: 2 + 3 + 1 payments with the header (one ran per key), 2 without, 2 webhook payments, 1 by hand.
    expect(series(text, 'lock_idempotent_calls_total', { label: 'PaymentsController.create', outcome: 'replayed' })).toBe(4);
    expect(series(text, 'lock_idempotent_calls_total', { label: 'WebhooksController.receive', outcome: 'replayed' })).toBe(3);
    expect(series(text, 'lock_idempotent_calls_total', { label: 'WebhooksController.receive', outcome: 'ran' })).toBe(2);
    const completed = (await queueOf(app).getJobCounts('completed')).completed!;
    // One account lock per applied job (a replayed job takes none); no contention here, so no requeue.
    expect(series(text, 'lock_acquisitions_total', { label: 'PaymentProcessor.process' })).toBe(completed - 1);
    expect(series(text, 'lock_wait_seconds_count', { label: 'PaymentProcessor.process' })).toBe(completed - 1);
    expect(series(text, 'lock_lost_total')).toBe(0);
    expect(text).toMatch(/^# TYPE lock_held gauge$/m);
    // Labels are method names, never keys: no account id or payment id appears in a series.
    expect(text).not.toMatch(/account:|payment:|evt_/);
  });

  it('GET /health: up, with the lock store check', async () => {
    const res = await http().get('/health').expect(200);
    expect(res.body).toMatchObject({ status: 'ok', info: { lock: { status: 'up' } } });
  });
});

describe('payments /health while its Redis is stopped (e2e)', () => {
  it('answers 503 with the lock store down, and 200 again once Redis is back', async () => {
    const server = await startRedis();
    const config = testConfig({ redisUrl: server.url, role: 'api' });
    let app: INestApplication | undefined;
    try {
      app = await createHttpApp(config);
      await request(app.getHttpServer()).get('/health').expect(200);
      await server.stop();
      const down = await request(app.getHttpServer()).get('/health').expect(503);
      expect(down.body).toMatchObject({ status: 'error', error: { lock: { status: 'down' } } });
      await server.restart();
      await waitFor('/health to be up again', async () => (await request(app!.getHttpServer()).get('/health')).status === 200, 15_000, 200);
      // Close once the app's other clients have reconnected too: ioredis' quit() on a client still
      // waiting to reconnect leaves a 2 s timer behind (its socket is already gone).
      const redis = app.get<Redis>(REDIS, { strict: false });
      const queue = queueOf(app);
      await waitFor(
        'the app and queue clients to reconnect',
        () =>
          Promise.all([redis.ping(), queue.getJobCounts()]).then(
            () => true,
            () => false,
          ),
        15_000,
        100,
      );
    } finally {
      await app?.close();
      await server.stop();
    }
  });
});

describe('payments worker metrics listener (e2e)', () => {
  it('a worker with metricsPort serves its own /metrics and /health, and stops listening on close', async () => {
    const config = testConfig({ metricsPort: 0 });
    const worker = await createWorkerApp(config);
    let closed = false;
    try {
      const url = worker.get(MetricsServer).url!;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const metrics = await fetch(`${url}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/^# TYPE lock_acquisitions_total counter$/m);
      const health = await fetch(`${url}/health`);
      expect({ status: health.status, body: await health.json() }).toMatchObject({ status: 200, body: { status: 'ok' } });
      expect((await fetch(`${url}/nope`)).status).toBe(404);
      await worker.close();
      closed = true;
      await expect(fetch(`${url}/metrics`)).rejects.toThrow();
    } finally {
      if (!closed) await worker.close();
      await dropKeys(config);
    }
  });
});
