import { Controller, Get, Header, Inject } from '@nestjs/common';
import { Registry } from 'prom-client';

/** Injection token of this app's prom-client Registry (one per app, so two apps in one process stay apart). */
export const METRICS_REGISTRY = Symbol('METRICS_REGISTRY');

/**
 * Buckets of `lock_wait_seconds`, in seconds: finer than the library's default below 100 ms, where the
 * sample's waits are (its payment lock waits 50 ms at most before the job is re-queued), so the demo's
 * percentiles, read from the buckets, are precise to a few ms.
 */
export const WAIT_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** `GET /metrics`: Prometheus text of this process (lock metrics from `nestjs-redis-lock/prometheus`). */
@Controller('metrics')
export class MetricsController {
  constructor(@Inject(METRICS_REGISTRY) private readonly registry: Registry) {}

  @Get()
  @Header('Content-Type', Registry.PROMETHEUS_CONTENT_TYPE)
  @Header('Cache-Control', 'no-store')
  scrape(): Promise<string> {
    return this.registry.metrics();
  }
}
