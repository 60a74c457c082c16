import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { LockHealthIndicator } from 'nestjs-redis-lock/terminus';

/** How long the lock store may take to answer the health check's PING, in ms. */
export const HEALTH_TIMEOUT_MS = 1_000;

/**
 * `GET /health` (terminus): 200 `{ status: 'ok', info: { lock: { status: 'up', ... } } }` while the lock
 * store answers within {@link HEALTH_TIMEOUT_MS}, 503 with `status: 'error'` when it does not.
 */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly lock: LockHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check([() => this.lock.isHealthy('lock', { timeout: HEALTH_TIMEOUT_MS })]);
  }
}
