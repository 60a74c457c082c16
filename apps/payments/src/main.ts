/**
 * HTTP API of the payments sample, with `GET /metrics` (Prometheus) and `GET /health` (terminus).
 * Also processes payments in-process unless `PAYMENTS_API_WORKER=0` (the demo runs separate worker processes).
 *
 * Environment: REDIS_URL, PORT (3000), HOST (127.0.0.1), PAYMENTS_PLATFORM (express | fastify),
 * PAYMENTS_NO_LOCK=1, PAYMENTS_KEY_PREFIX, PAYMENTS_QUEUE_PREFIX and the tuning in config.ts.
 */
import { type INestApplication, Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { collectDefaultMetrics, type Registry } from 'prom-client';
import { AppModule } from './app.module.js';
import { configFromEnv } from './config.js';
import { METRICS_REGISTRY } from './observability/metrics.js';

// The API serves /metrics and /health on its own port: PAYMENTS_METRICS_PORT is for worker.ts.
const config = { ...configFromEnv(process.env.PAYMENTS_API_WORKER === '0' ? 'api' : 'all'), metricsPort: undefined };
const module = AppModule.forRoot(config);

let app: INestApplication;
if (process.env.PAYMENTS_PLATFORM === 'fastify') {
  const { FastifyAdapter } = await import('@nestjs/platform-fastify');
  app = await NestFactory.create(module, new FastifyAdapter());
} else {
  app = await NestFactory.create(module);
}
// Process metrics (CPU, memory, event loop lag) next to the lock metrics on GET /metrics.
collectDefaultMetrics({ register: app.get<Registry>(METRICS_REGISTRY) });
app.enableShutdownHooks();
await app.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1');
new Logger('Payments').log(
  `API listening on ${await app.getUrl()} (worker: ${config.role === 'all' ? 'in-process' : 'none'}, lock: ${config.lock ? 'on' : 'OFF'})`,
);
