/**
 * Payment worker: processes the `payments` queue, serves no API. Run as many as you like.
 * With PAYMENTS_METRICS_PORT (0: any free port) it serves `GET /metrics` and `GET /health` there.
 *
 * Environment: REDIS_URL, PAYMENTS_NO_LOCK=1, PAYMENTS_KEY_PREFIX, PAYMENTS_QUEUE_PREFIX, PAYMENTS_METRICS_PORT,
 * HOST (of the metrics listener, 127.0.0.1) and the tuning in config.ts.
 */
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { collectDefaultMetrics, type Registry } from 'prom-client';
import { AppModule } from './app.module.js';
import { configFromEnv } from './config.js';
import { METRICS_REGISTRY } from './observability/metrics.js';
import { MetricsServer } from './observability/metrics-server.js';

const config = configFromEnv('worker');
const app = await NestFactory.createApplicationContext(AppModule.forRoot(config));
collectDefaultMetrics({ register: app.get<Registry>(METRICS_REGISTRY) });
app.enableShutdownHooks();
const metrics = app.get(MetricsServer).url;
new Logger('Payments').log(
  `worker ready (pid ${process.pid}, lock: ${config.lock ? 'on' : 'OFF'}${metrics ? `, metrics ${metrics}/metrics` : ''})`,
);
