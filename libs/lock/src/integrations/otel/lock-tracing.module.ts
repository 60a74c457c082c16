import { Module, type DynamicModule } from '@nestjs/common';
import { integrationProviders } from '../lock-source.js';
import { checkTracingOptions, LockTracing, type LockTracingOptions } from './lock-tracing.js';

/**
 * OpenTelemetry spans of the application's locks (`nestjs-redis-lock/otel`, needs `@opentelemetry/api`),
 * from the tracer `trace.getTracer('nestjs-redis-lock')`:
 * - `lock.wait` around each acquisition, from its start to the lock being held (`lock.outcome`
 *   `acquired`, with `lock.waited_ms` and `lock.fencing_token`), its timeout or its failure (status
 *   ERROR); attributes `lock.label`, `lock.keys.count`, `lock.wait_limit_ms` (and `lock.keys` with `recordKeys`);
 * - `lock.idempotent` for each idempotent call, with `lock.label`, `lock.outcome` and `lock.duration_ms`.
 *
 * Spans are children of the span active where the lock was asked for. Without a registered tracer
 * provider the API's no-op tracer records nothing.
 *
 * @example
 * ```ts
 * @Module({ imports: [LockModule.forRoot({ redis: process.env.REDIS_URL }), LockTracingModule.forRoot()] })
 * export class AppModule {}
 * ```
 */
@Module({})
export class LockTracingModule {
  /**
   * Spans for the app's locks and idempotent calls.
   * @throws LockArgumentError for a bad option, at once.
   */
  static forRoot(options: LockTracingOptions = {}): DynamicModule {
    const checked = checkTracingOptions(options);
    return {
      module: LockTracingModule,
      providers: integrationProviders({ name: 'LockTracingModule', attach: (service) => new LockTracing(checked).attach(service) }),
    };
  }
}
