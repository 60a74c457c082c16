import { type DynamicModule, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { LockPrometheusModule } from 'nestjs-redis-lock/prometheus';
import { LockHealthModule } from 'nestjs-redis-lock/terminus';
import { Registry } from 'prom-client';
import { HealthController } from './health.controller.js';
import { METRICS_REGISTRY, MetricsController, WAIT_BUCKETS } from './metrics.js';
import { MetricsServer } from './metrics-server.js';

/**
 * `/metrics` and `/health`: the lock metrics of `nestjs-redis-lock/prometheus` in a registry of this
 * app's own, and terminus with `LockHealthIndicator` from `nestjs-redis-lock/terminus`. A worker
 * (no HTTP adapter) serves both through {@link MetricsServer} on `metricsPort`.
 */
@Module({})
export class ObservabilityModule {
  static forRoot(): DynamicModule {
    const registry = new Registry();
    return {
      module: ObservabilityModule,
      imports: [LockPrometheusModule.forRoot({ registry, waitBuckets: WAIT_BUCKETS }), TerminusModule, LockHealthModule],
      controllers: [MetricsController, HealthController],
      providers: [{ provide: METRICS_REGISTRY, useValue: registry }, MetricsServer],
      exports: [METRICS_REGISTRY, MetricsServer],
    };
  }
}
