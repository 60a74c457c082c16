/**
 * The payment processor across several workers, against a real Redis (REDIS_URL): exact balances
 * under contention with the lock, lost updates without it, and a worker killed mid-job.
 */
import type { INestApplication, INestApplicationContext } from '@nestjs/common';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import request from 'supertest';

// Decorator arguments are read from the environment when the classes are defined (see config.ts),
// so the tuning of this suite is set before the app is imported, and restored afterwards.
const TUNING = {
  PAYMENTS_LOCK_WAIT_MS: '40', // short: contention turns into requeues
  PAYMENTS_REQUEUE_DELAY_MS: '50',
  PAYMENTS_LOCK_TTL_MS: '3000', // a killed worker's lock expires within the test
  PAYMENTS_WORKER_LOCK_DURATION_MS: '2000', // ... and so does its BullMQ job lock
  PAYMENTS_WORKER_STALLED_INTERVAL_MS: '1000',
  PAYMENTS_WORKER_CONCURRENCY: '8',
};
const saved = Object.fromEntries(Object.keys(TUNING).map((name) => [name, process.env[name]]));
Object.assign(process.env, TUNING);
const { createHttpApp, createWorkerApp, dropKeys, inPool, queueOf, testConfig, waitFor, waitForJobs } =
  await import('../apps/payments/test/e2e-fixtures.js');
const { AccountsRepository } = await import('../apps/payments/src/accounts/accounts.repository.js');
const { LockService } = await import('nestjs-redis-lock');
for (const [name, value] of Object.entries(saved)) {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}
type PaymentsConfig = ReturnType<typeof testConfig>;

const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('payments queue (e2e)', () => {
  const apps: INestApplicationContext[] = [];
  const children: ChildProcess[] = [];
  const configs: PaymentsConfig[] = [];

  afterEach(async () => {
    await Promise.all(children.splice(0).map(stopChild));
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await Promise.all(configs.splice(0).map(dropKeys));
  });

  /** An API app (no worker) plus `workers` worker apps, all on one queue. */
  async function cluster(config: PaymentsConfig, workers: number): Promise<INestApplication> {
    configs.push(config);
    const api = await createHttpApp({ ...config, role: 'api' });
    apps.push(api);
    for (let i = 0; i < workers; i++) apps.push(await createWorkerApp(config));
    return api;
  }

  async function burst(api: INestApplication, accounts: Record<string, number>, count: number) {
    for (const [id, initialBalance] of Object.entries(accounts)) {
      await request(api.getHttpServer()).post('/accounts').send({ id, initialBalance }).expect(201);
    }
    const ids = Object.keys(accounts);
    const payments = Array.from({ length: count }, (_, i) => ({ accountId: ids[i % ids.length]!, amount: 1 + ((i * 53) % 400) }));
    await inPool(25, payments, (body) => request(api.getHttpServer()).post('/payments').send(body).expect(202));
    const expected = Object.fromEntries(
      ids.map((id) => [id, accounts[id]! + payments.filter((p) => p.accountId === id).reduce((sum, p) => sum + p.amount, 0)]),
    );
    return { expected, counts: await waitForJobs(queueOf(api), count, 45_000) };
  }

  const balances = async (api: INestApplication, ids: string[]) =>
    Object.fromEntries(
      await Promise.all(ids.map(async (id) => [id, (await request(api.getHttpServer()).get(`/accounts/${id}`).expect(200)).body.balance])),
    );

  it('three workers with the lock: exact balances, no failed job, requeued jobs complete', async () => {
    const api = await cluster(testConfig({ applyDelayMs: 10 }), 3);
    const { expected, counts } = await burst(api, { hot: 0, cold: 1_000 }, 240);

    expect(counts).toEqual({ completed: 240, failed: 0 });
    expect(await balances(api, ['hot', 'cold'])).toEqual(expected);

    const jobs = await queueOf(api).getJobs(['completed'], 0, -1);
    const requeued = jobs.filter((job) => job.returnvalue.requeues > 0);
    const stats = (await request(api.getHttpServer()).get('/payments/stats').expect(200)).body;
    expect(requeued.length).toBeGreaterThan(0);
    expect(stats.requeues).toBe(jobs.reduce((sum, job) => sum + job.returnvalue.requeues, 0));
    expect(jobs.every((job) => job.returnvalue.outcome === 'applied')).toBe(true);
    expect(stats.applied).toBe(240);
  });

  it('the same without the lock loses updates (the test can fail)', async () => {
    const api = await cluster(testConfig({ applyDelayMs: 10, lock: false }), 3);
    const { expected, counts } = await burst(api, { hot: 0, cold: 1_000 }, 240);

    expect(counts.completed).toBe(240);
    const actual = await balances(api, ['hot', 'cold']);
    const lost = expected.hot! + expected.cold! - actual.hot - actual.cold;
    expect(lost).toBeGreaterThan(0);
  });

  it.each([
    ['after the balance was written', { PAYMENTS_RECEIPT_DELAY_MS: '20000' }, 'duplicate'],
    ['between the read and the write', { PAYMENTS_APPLY_DELAY_MS: '20000' }, 'applied'],
  ])('a worker SIGKILLed %s: the stalled job is re-delivered and applied exactly once', async (_when, delays, outcome) => {
    const config = testConfig();
    const api = await cluster(config, 0);
    await request(api.getHttpServer()).post('/accounts').send({ id: 'victim', initialBalance: 1_000 }).expect(201);

    const child = startWorker(config, delays);
    await waitFor('the child worker to start', async () => child.output.includes('worker ready'), 30_000);
    const { paymentId } = (await request(api.getHttpServer()).post('/payments').send({ accountId: 'victim', amount: 250 }).expect(202))
      .body;
    const queue = queueOf(api);
    if (outcome === 'duplicate') {
      await waitFor('the child to apply the payment', async () => (await balanceOf(api, 'victim')) === 1_250, 10_000);
    } else {
      await waitFor('the child to take the job', async () => (await queue.getJobState(paymentId)) === 'active', 10_000);
    }
    child.process.kill('SIGKILL');
    await once(child.process, 'exit');
    expect(await queue.getJobState(paymentId)).toBe('active');

    // A fresh worker finds the stalled job once its BullMQ lock expires, and waits out (by
    // requeueing) the dead worker's account lock, which nobody extends any more.
    apps.push(await createWorkerApp(config));
    await waitFor('the job to complete elsewhere', async () => (await queue.getJobState(paymentId)) === 'completed', 20_000, 100);

    const job = (await queue.getJob(paymentId))!;
    expect(job.returnvalue.outcome).toBe(outcome);
    expect(await balanceOf(api, 'victim')).toBe(1_250);
  });

  it('refuses a payment write fenced by a newer holder of the account lock', async () => {
    const api = await cluster(testConfig(), 0);
    await request(api.getHttpServer()).post('/accounts').send({ id: 'fenced', initialBalance: 100 }).expect(201);
    const locks = api.get(LockService);
    const accounts = api.get(AccountsRepository);
    // acquire() does not extend by itself: the first holder's lock expires while it "pauses".
    const stale = await locks.acquire('account:fenced', { ttl: 200 });
    const fresh = await locks.acquire('account:fenced', { ttl: 5_000, wait: 5_000 });
    try {
      expect(fresh.fencingToken).toBeGreaterThan(stale.fencingToken);
      expect(await accounts.commitPayment('fenced', 'p-new', 150, fresh.fencingToken)).toBe('applied');
      expect(await accounts.commitPayment('fenced', 'p-old', 999, stale.fencingToken)).toBe('fenced');
      expect(await accounts.commitPayment('fenced', 'p-new', 999, fresh.fencingToken)).toBe('duplicate');
      expect(await balanceOf(api, 'fenced')).toBe(150);
    } finally {
      await fresh.release();
    }
  });

  const balanceOf = async (api: INestApplication, id: string): Promise<number> =>
    (await request(api.getHttpServer()).get(`/accounts/${id}`).expect(200)).body.balance;

  function startWorker(config: PaymentsConfig, extraEnv: Record<string, string>) {
    const child = spawn(process.execPath, ['--import', '@swc-node/register/esm-register', 'apps/payments/src/worker.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        ...TUNING,
        ...extraEnv,
        REDIS_URL: config.redisUrl,
        PAYMENTS_KEY_PREFIX: config.keyPrefix,
        PAYMENTS_QUEUE_PREFIX: config.queuePrefix,
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    const handle = { process: child, output: '' };
    const keep = (chunk: Buffer) => (handle.output = (handle.output + chunk.toString()).slice(-10_000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    return handle;
  }
});

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}
