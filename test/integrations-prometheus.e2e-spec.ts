/**
 * nestjs-redis-lock/prometheus on a real Redis: the metrics over a small scripted run (acquire, a
 * contended wait, a timeout, a lost lock, an idempotent call and its replay), a bounded label set over
 * 10,000 distinct keys, two apps on one registry, and bad options refused at declaration.
 */
import { Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { setTimeout as sleep } from 'node:timers/promises';
import { Counter, Registry } from 'prom-client';
import { IdempotencyService, LockArgumentError, LockModule, LockService, LockTimeoutError } from 'nestjs-redis-lock';
import { LockPrometheusModule, type LockPrometheusOptions } from 'nestjs-redis-lock/prometheus';
import { dropKeys, randomPrefix, redisUrl, waitFor } from './fixtures/lock-e2e-utils.js';

describe('Prometheus metrics (e2e)', () => {
  const keyPrefix = randomPrefix('prom');
  const apps: INestApplicationContext[] = [];

  async function boot(prometheus: LockPrometheusOptions): Promise<INestApplicationContext> {
    @Module({ imports: [LockModule.forRoot({ redis: redisUrl(), keyPrefix }), LockPrometheusModule.forRoot(prometheus)] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    apps.push(app);
    return app;
  }

  /** The value of one series (0 when it does not exist yet); `name` may be a histogram's `_bucket`, `_sum` or `_count`. */
  async function value(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
    const base = registry.getSingleMetric(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    const metric = registry.getSingleMetric(base);
    if (!metric) throw new Error(`no metric ${name}`);
    const { values } = await metric.get();
    const found = values.find(
      (v) =>
        ((v as { metricName?: string }).metricName ?? base) === name && Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l),
    );
    return found?.value ?? 0;
  }

  /** Every series of the registry, as `name{labels}` (histogram buckets included). */
  async function series(registry: Registry): Promise<string[]> {
    const text = await registry.metrics();
    return text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
  }

  afterAll(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await dropKeys(redisUrl(), keyPrefix);
  });

  it('counts acquisitions, waits, timeouts, lost locks, holds and idempotent calls by label; the gauges follow the locks', async () => {
    const registry = new Registry();
    const app = await boot({ registry });
    const locks = app.get(LockService);
    const idempotency = app.get(IdempotencyService);
    const at = (name: string, labels?: Record<string, string>) => value(registry, `lock_${name}`, labels);

    // Every metric is there from the start, the gauges at 0.
    expect(
      registry
        .getMetricsAsArray()
        .map((m) => m.name)
        .sort(),
    ).toEqual(
      [
        'acquisitions_total',
        'failures_total',
        'held',
        'hold_seconds',
        'idempotent_calls_total',
        'lost_total',
        'requeues_total',
        'timeouts_total',
        'wait_seconds',
        'waiting',
      ].map((n) => `lock_${n}`),
    );
    expect(await at('held')).toBe(0);

    // 1. An uncontended acquisition, held ~50 ms.
    await locks.using('m:plain', { label: 'plain' }, () => sleep(50));
    expect(await at('acquisitions_total', { label: 'plain' })).toBe(1);
    expect(await at('hold_seconds_count', { label: 'plain' })).toBe(1);
    expect(await at('hold_seconds_sum', { label: 'plain' })).toBeGreaterThanOrEqual(0.04);
    expect(await at('wait_seconds_count', { label: 'plain' })).toBe(1);

    // 2. A contended wait: the gauges show one held and one waiting while it waits.
    const holder = await locks.acquire('m:busy', { label: 'holder', ttl: 10_000 });
    expect(await at('held')).toBe(1);
    const waiter = locks.using('m:busy', { label: 'contended', wait: 10_000 }, () => 'got it');
    await waitFor('the waiter to be counted', async () => (await at('waiting')) === 1, 5_000);
    await sleep(200);
    await holder.release();
    await expect(waiter).resolves.toBe('got it');
    expect(await at('acquisitions_total', { label: 'contended' })).toBe(1);
    // It waited about 200 ms or more: above the 0.1 s bucket boundary, within the 10 s one.
    expect(await at('wait_seconds_sum', { label: 'contended' })).toBeGreaterThanOrEqual(0.15);
    expect(await at('wait_seconds_bucket', { label: 'contended', le: '0.1' })).toBe(0);
    expect(await at('wait_seconds_bucket', { label: 'contended', le: '10' })).toBe(1);
    expect(await at('waiting')).toBe(0);
    expect(await at('held')).toBe(0);

    // 3. A timeout.
    const blocker = await locks.acquire('m:timeout', { ttl: 10_000 });
    await expect(locks.acquire('m:timeout', { label: 'impatient', wait: 100 })).rejects.toBeInstanceOf(LockTimeoutError);
    expect(await at('timeouts_total', { label: 'impatient' })).toBe(1);
    expect(await at('acquisitions_total', { label: 'impatient' })).toBe(0);
    await blocker.release();

    // 4. A lost lock: no heartbeat, its ttl runs out while held.
    const doomed = await locks.acquire('m:lost', { label: 'doomed', ttl: 200, autoExtend: false });
    await waitFor('the lock to count as lost', async () => (await at('lost_total', { label: 'doomed' })) === 1, 5_000);
    expect(doomed.isHeld).toBe(false);
    await doomed.release();

    // 5. An idempotent call, then its replay.
    let runs = 0;
    await idempotency.run('m:pay', { label: 'pay' }, async () => ({ n: ++runs }));
    await idempotency.run('m:pay', { label: 'pay' }, async () => ({ n: ++runs }));
    expect(runs).toBe(1);
    expect(await at('idempotent_calls_total', { label: 'pay', outcome: 'ran' })).toBe(1);
    expect(await at('idempotent_calls_total', { label: 'pay', outcome: 'replayed' })).toBe(1);

    // No label: "unlabelled", never the key.
    await locks.using('m:no-label', {}, () => undefined);
    expect(await at('acquisitions_total', { label: 'unlabelled' })).toBeGreaterThanOrEqual(1);
    expect(await registry.metrics()).not.toContain('m:no-label');

    // After app.close() the app reports nothing any more (unsubscribed; the gauges forget it).
    const before = await at('acquisitions_total', { label: 'plain' });
    const held = await locks.acquire('m:at-close', { label: 'plain', ttl: 10_000 });
    expect(await at('held')).toBe(1);
    await app.close();
    apps.splice(apps.indexOf(app), 1);
    expect(held.isHeld).toBe(false);
    expect(await at('held')).toBe(0);
    expect(await at('acquisitions_total', { label: 'plain' })).toBe(before + 1);
  }, 60_000);

  it('keeps the label set bounded: 10,000 distinct keys under one label (and 1,000 unlabelled) add no series', async () => {
    const registry = new Registry();
    const app = await boot({ registry });
    const locks = app.get(LockService);
    await locks.using('bulk:warm-up', { label: 'bulk' }, () => undefined);
    await locks.using('bulk:warm-up', {}, () => undefined);
    const before = await series(registry);

    const deadline = Date.now() + 90_000;
    const KEYS = 10_000;
    const CONCURRENCY = 50;
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < KEYS && Date.now() < deadline) {
          const i = next++;
          await locks.using(`bulk:key-${i}`, i < 1_000 ? {} : { label: 'bulk' }, () => undefined);
        }
      }),
    );
    expect(next).toBe(KEYS);
    const after = await series(registry);
    expect(after.length).toBe(before.length);
    expect(await value(registry, 'lock_acquisitions_total', { label: 'bulk' })).toBe(KEYS - 1_000 + 1);
    expect(await value(registry, 'lock_acquisitions_total', { label: 'unlabelled' })).toBe(1_000 + 1);
    expect(after.join('\n')).not.toContain('key-');
    // Every series is one of the two labels.
    const labels = new Set(after.flatMap((line) => [...line.matchAll(/label="([^"]*)"/g)].map((m) => m[1])));
    expect([...labels].sort()).toEqual(['bulk', 'unlabelled']);
  }, 120_000);

  it('two apps on one registry share the metrics (no "already registered"); a foreign metric of the same name is refused', async () => {
    const registry = new Registry();
    const [a, b] = [await boot({ registry, prefix: 'two_' }), await boot({ registry, prefix: 'two_' })];
    const [la, lb] = [a.get(LockService), b.get(LockService)];
    await la.using('two:a', { label: 'two' }, () => undefined);
    await lb.using('two:b', { label: 'two' }, () => undefined);
    expect(await value(registry, 'two_acquisitions_total', { label: 'two' })).toBe(2);
    const [ha, hb] = [await la.acquire('two:held-a', { ttl: 10_000 }), await lb.acquire('two:held-b', { ttl: 10_000 })];
    expect(await value(registry, 'two_held')).toBe(2);
    await Promise.all([ha.release(), hb.release()]);

    const taken = new Registry();
    new Counter({ name: 'lock_acquisitions_total', help: 'someone else', registers: [taken] });
    @Module({ imports: [LockModule.forRoot({ redis: redisUrl(), keyPrefix }), LockPrometheusModule.forRoot({ registry: taken })] })
    class TakenModule {}
    const moduleRef = await Test.createTestingModule({ imports: [TakenModule] }).compile();
    const failed = await moduleRef.init().catch((error: unknown) => error);
    await moduleRef.close();
    expect(failed).toBeInstanceOf(LockArgumentError);
    expect((failed as Error).message).toContain('"lock_acquisitions_total"');
    expect((failed as Error).message).toContain('prefix');
  }, 30_000);

  it('refuses bad options at declaration, naming the option and the value', () => {
    expect(() => LockPrometheusModule.forRoot({ prefix: 'bad prefix' })).toThrow(LockArgumentError);
    expect(() => LockPrometheusModule.forRoot({ prefix: 'bad prefix' })).toThrow(/prefix .*"bad prefix"/);
    expect(() => LockPrometheusModule.forRoot({ registry: {} as Registry })).toThrow(/registry must be a prom-client Registry/);
    expect(() => LockPrometheusModule.forRoot({ waitBuckets: [1, 0.5] })).toThrow(/waitBuckets .*\[1,0\.5\]/);
    expect(() => LockPrometheusModule.forRoot({ prefixx: 'x' } as LockPrometheusOptions)).toThrow(/unknown option "prefixx"/);
  });
});
