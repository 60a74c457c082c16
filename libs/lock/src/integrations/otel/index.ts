/**
 * OpenTelemetry spans of nestjs-redis-lock: `nestjs-redis-lock/otel` (optional peer: `@opentelemetry/api`).
 * See docs/observability.md ("OpenTelemetry").
 * @packageDocumentation
 */
export { LockTracingModule } from './lock-tracing.module.js';
export { LOCK_TRACER_NAME, type LockTracingOptions } from './lock-tracing.js';
