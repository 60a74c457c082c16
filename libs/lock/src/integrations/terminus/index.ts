/**
 * A terminus health indicator for nestjs-redis-lock's store: `nestjs-redis-lock/terminus` (optional
 * peer: `@nestjs/terminus`). See docs/observability.md ("Health (terminus)").
 * @packageDocumentation
 */
export { LockHealthIndicator, LockHealthModule, type LockHealthOptions } from './lock-health.indicator.js';
