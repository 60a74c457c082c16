/**
 * nestjs-redis-lock/otel on a real Redis: `lock.wait` spans from `acquiring` to `acquired`, `timeout` or
 * `failed` (matched by token), `lock.idempotent` spans, recorded with the SDK's in-memory exporter; and
 * nothing at all (no span, no error) while no tracer provider is registered.
 */
import { Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createServer, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { IdempotencyService, LockArgumentError, LockModule, LockService, LockTimeoutError, LockUnavailableError } from 'nestjs-redis-lock';
import { LOCK_TRACER_NAME, LockTracingModule, type LockTracingOptions } from 'nestjs-redis-lock/otel';
import { dropKeys, randomPrefix, redisUrl } from './fixtures/lock-e2e-utils.js';

describe('OpenTelemetry spans (e2e)', () => {
  const keyPrefix = randomPrefix('otel');
  const apps: INestApplicationContext[] = [];
  const exporter = new InMemorySpanExporter();

  async function boot(redis = redisUrl(), tracing: LockTracingOptions = {}, connectTimeout = 2_000): Promise<INestApplicationContext> {
    @Module({ imports: [LockModule.forRoot({ redis, keyPrefix, connectTimeout }), LockTracingModule.forRoot(tracing)] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    apps.push(app);
    return app;
  }

  const spans = (name: string, label?: string): ReadableSpan[] =>
    exporter.getFinishedSpans().filter((s) => s.name === name && (label === undefined || s.attributes['lock.label'] === label));

  afterEach(() => {
    trace.disable();
    exporter.reset();
  });
  afterAll(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await dropKeys(redisUrl(), keyPrefix);
  });

  it('makes no span and throws nothing while no tracer provider is registered', async () => {
    const app = await boot();
    const locks = app.get(LockService);
    await locks.using('o:none', { label: 'none' }, () => sleep(10));
    const blocker = await locks.acquire('o:none-busy', { ttl: 10_000 });
    await expect(locks.acquire('o:none-busy', { label: 'none', wait: 50 })).rejects.toBeInstanceOf(LockTimeoutError);
    await blocker.release();
    await app.get(IdempotencyService).run('o:none-idem', { label: 'none' }, async () => 1);
    // Registered only now: what ran before left nothing to export.
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    // And the same app traces from now on (the API's proxy tracer delegates to the new provider).
    await locks.using('o:none', { label: 'late' }, () => undefined);
    expect(spans('lock.wait', 'late')).toHaveLength(1);
  });

  it('records a lock.wait span per acquisition and a lock.idempotent span per idempotent call, with their attributes', async () => {
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    const app = await boot(redisUrl(), { recordKeys: true });
    const locks = app.get(LockService);

    // Acquired after a contended wait of ~150 ms.
    const holder = await locks.acquire('o:busy', { label: 'holder', ttl: 10_000 });
    const waiting = locks.using('o:busy', { label: 'waiter', wait: 10_000 }, (lock) => lock.fencingToken);
    await sleep(150);
    await holder.release();
    const fencingToken = await waiting;
    const [acquired] = spans('lock.wait', 'waiter');
    expect(spans('lock.wait', 'waiter')).toHaveLength(1);
    expect(acquired!.instrumentationScope.name).toBe(LOCK_TRACER_NAME);
    expect(acquired!.attributes).toMatchObject({
      'lock.label': 'waiter',
      'lock.outcome': 'acquired',
      'lock.fencing_token': fencingToken,
      'lock.keys.count': 1,
      'lock.keys': ['o:busy'],
      'lock.wait_limit_ms': 10_000,
    });
    expect(acquired!.attributes['lock.waited_ms']).toBeGreaterThanOrEqual(100);
    expect(acquired!.status.code).toBe(SpanStatusCode.UNSET);
    // The span covers the wait: it started before the holder released.
    const durationMs = acquired!.duration[0] * 1000 + acquired!.duration[1] / 1e6;
    expect(durationMs).toBeGreaterThanOrEqual(100);

    // A timeout.
    const blocker = await locks.acquire('o:timeout', { ttl: 10_000 });
    await expect(locks.acquire('o:timeout', { label: 'impatient', wait: 50 })).rejects.toBeInstanceOf(LockTimeoutError);
    await blocker.release();
    const [timedOut] = spans('lock.wait', 'impatient');
    expect(timedOut!.attributes).toMatchObject({ 'lock.outcome': 'timeout' });
    expect(timedOut!.status.code).toBe(SpanStatusCode.ERROR);

    // An idempotent call and its replay.
    const idempotency = app.get(IdempotencyService);
    await idempotency.run('o:pay', { label: 'pay' }, async () => ({ ok: true }));
    await idempotency.run('o:pay', { label: 'pay' }, async () => ({ ok: false }));
    const calls = spans('lock.idempotent', 'pay');
    expect(calls.map((s) => s.attributes['lock.outcome'])).toEqual(['ran', 'replayed']);
    expect(typeof calls[0]!.attributes['lock.duration_ms']).toBe('number');

    // No label: "unlabelled".
    await locks.using('o:plain', {}, () => undefined);
    expect(spans('lock.wait', 'unlabelled').length).toBeGreaterThanOrEqual(1);
  });

  it('ends the span of a failed acquisition with the error (a Redis that does not answer)', async () => {
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    // A port that accepts connections and never answers: every call runs into connectTimeout.
    const sockets = new Set<import('node:net').Socket>();
    const silent: Server = createServer((socket) => void sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as { port: number };
      const app = await boot(`redis://127.0.0.1:${port}`, {}, 300);
      await expect(app.get(LockService).acquire('o:down', { label: 'down', wait: 0 })).rejects.toBeInstanceOf(LockUnavailableError);
      const [failed] = spans('lock.wait', 'down');
      expect(failed!.attributes['lock.outcome']).toBe('failed');
      expect(failed!.status.code).toBe(SpanStatusCode.ERROR);
      expect(failed!.events.map((e) => e.name)).toContain('exception');
      await app.close();
      apps.splice(apps.indexOf(app), 1);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('refuses bad options at declaration', () => {
    expect(() => LockTracingModule.forRoot({ recordKeys: 'yes' as unknown as boolean })).toThrow(LockArgumentError);
    expect(() => LockTracingModule.forRoot({ recordKeys: 'yes' as unknown as boolean })).toThrow(
      /recordKeys must be true or false, got "yes"/,
    );
  });
});
