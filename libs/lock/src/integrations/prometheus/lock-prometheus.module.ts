import { Module, type DynamicModule } from '@nestjs/common';
import { integrationProviders } from '../lock-source.js';
import { checkPrometheusOptions, LockMetrics, type LockPrometheusOptions } from './lock-metrics.js';

/**
 * Prometheus metrics of the application's locks (`nestjs-redis-lock/prometheus`, needs `prom-client`):
 * counters `lock_acquisitions_total`, `lock_timeouts_total`, `lock_failures_total`, `lock_lost_total`,
 * `lock_requeues_total` (label), `lock_idempotent_calls_total` (label, outcome); histograms
 * `lock_wait_seconds` and `lock_hold_seconds` (label); gauges `lock_held` and `lock_waiting`, read when
 * scraped. `label` is the acquisition's `label` option (`Class.method` for the decorators), or
 * `"unlabelled"`: never a key, so the series stay bounded.
 *
 * Registering twice in one registry (two apps in one process, tests) reuses the metrics: counters and
 * histograms add up both apps, the gauges sum the live ones. A name registered by something else fails
 * at init with a LockArgumentError (pass another `prefix`).
 *
 * @example
 * ```ts
 * @Module({
 *   imports: [LockModule.forRoot({ redis: process.env.REDIS_URL }), LockPrometheusModule.forRoot()],
 * })
 * export class AppModule {}
 * // GET /metrics: `await register.metrics()` (prom-client's default registry)
 * ```
 */
@Module({})
export class LockPrometheusModule {
  /**
   * The metrics in `registry` (default prom-client's `register`), named `<prefix>...` (default `lock_`).
   * @throws LockArgumentError for a bad option, at once; at init, for a metric name something else registered.
   */
  static forRoot(options: LockPrometheusOptions = {}): DynamicModule {
    const checked = checkPrometheusOptions(options);
    return {
      module: LockPrometheusModule,
      providers: integrationProviders({ name: 'LockPrometheusModule', attach: (service) => new LockMetrics(checked).attach(service) }),
    };
  }
}
