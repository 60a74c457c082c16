import { Inject, Injectable, Module } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { HealthIndicatorService, TerminusModule, type HealthIndicatorResult } from '@nestjs/terminus';
import { LockArgumentError } from '../../core/errors.js';
import { messages } from '../../core/messages.js';
import { MAX_DURATION } from '../../core/validate.js';
import { lockServiceInternals } from '../../lock.registry.js';
import { findLockService } from '../lock-source.js';

/** Options of {@link LockHealthIndicator.isHealthy}. */
export interface LockHealthOptions {
  /**
   * How long the store may take to answer, ms; slower counts as down. Default: the module's
   * `connectTimeout` (2000 unless set).
   */
  timeout?: number;
}

/**
 * A terminus health indicator for the lock store (`nestjs-redis-lock/terminus`, needs `@nestjs/terminus` 11+):
 * one Redis or Sentinel: a PING round trip; Redis Cluster: CLUSTER INFO, up when `cluster_state:ok` and
 * all 16384 slots are served; a Redlock quorum: every node pinged, up when at least a majority answers;
 * the memory store: always up. Bounded by `timeout`: a stopped or frozen Redis is reported down, never
 * waited for. Details (round trip, slots, nodes answering, the error) carry no password.
 *
 * @example
 * ```ts
 * @Module({ imports: [TerminusModule, LockHealthModule], controllers: [HealthController] })
 * export class HealthModule {}
 *
 * @Controller('health')
 * export class HealthController {
 *   constructor(private readonly health: HealthCheckService, private readonly lock: LockHealthIndicator) {}
 *   @Get() @HealthCheck()
 *   check() { return this.health.check([() => this.lock.isHealthy('lock', { timeout: 1000 })]); }
 * }
 * ```
 */
@Injectable()
export class LockHealthIndicator {
  constructor(
    @Inject(HealthIndicatorService) private readonly indicators: HealthIndicatorService,
    @Inject(ModuleRef) private readonly moduleRef: ModuleRef,
  ) {}

  /**
   * Checks the store of the app's LockModule.
   * @param key - the key of this check in the health report. Default `lock`.
   * @returns `{ [key]: { status: 'up' | 'down', ...details } }`.
   * @throws LockArgumentError for a bad `timeout` (before the store is asked).
   * @throws LockNotInitializedError when the application has no LockModule.
   */
  async isHealthy<const K extends string = 'lock'>(
    key: K = 'lock' as K,
    options: LockHealthOptions = {},
  ): Promise<HealthIndicatorResult<K>> {
    const timeout = checkTimeout(options);
    const indicator = this.indicators.check(key);
    const service = findLockService(this.moduleRef, 'LockHealthIndicator');
    const client = lockServiceInternals.get(service)?.client;
    // A LockService mock (overrideProvider in tests) has no store to check.
    if (!client) return indicator.up({ store: 'mock' });
    const { up, details } = await client.health(timeout);
    return up ? indicator.up(details) : indicator.down(details);
  }
}

function checkTimeout(options: LockHealthOptions): number | undefined {
  const where = 'LockHealthIndicator.isHealthy()';
  if (typeof options !== 'object' || options === null) throw new LockArgumentError(messages.optionsNotObject(where, options));
  for (const name of Object.keys(options)) {
    if (name !== 'timeout') throw new LockArgumentError(messages.optionUnknown(where, name, undefined, ['timeout']));
  }
  const { timeout } = options;
  if (timeout === undefined) return undefined;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 1 || timeout > MAX_DURATION) {
    throw new LockArgumentError(
      messages.argumentInvalid(where, 'timeout', `must be a number of milliseconds from 1 to ${MAX_DURATION}`, timeout),
    );
  }
  return timeout;
}

/**
 * Provides {@link LockHealthIndicator} (with terminus' `HealthIndicatorService`) to the module that imports it.
 * The application must import LockModule too (anywhere).
 */
@Module({
  imports: [TerminusModule],
  providers: [LockHealthIndicator],
  exports: [LockHealthIndicator],
})
export class LockHealthModule {}
