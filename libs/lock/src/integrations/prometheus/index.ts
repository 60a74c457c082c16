/**
 * Prometheus metrics of nestjs-redis-lock: `nestjs-redis-lock/prometheus` (optional peer: `prom-client`).
 * See docs/observability.md ("Prometheus").
 * @packageDocumentation
 */
export { LockPrometheusModule } from './lock-prometheus.module.js';
export { LOCK_HOLD_BUCKETS, LOCK_WAIT_BUCKETS, type LockPrometheusOptions } from './lock-metrics.js';
