import { Inject, Injectable, Module, type DynamicModule, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { findLockService } from '../lock-source.js';
import { checkTracingOptions, LockTracing, type CheckedTracingOptions, type LockTracingOptions } from './lock-tracing.js';

/** Injection token of the checked options. @internal */
const LOCK_TRACING_OPTIONS = Symbol('LOCK_TRACING_OPTIONS');

/** Subscribes the tracing to the app's LockService at init, and unsubscribes at shutdown. @internal */
@Injectable()
class LockTracingSubscriber implements OnModuleInit, OnApplicationShutdown {
  #detach?: () => void;

  constructor(
    @Inject(LOCK_TRACING_OPTIONS) private readonly options: CheckedTracingOptions,
    @Inject(ModuleRef) private readonly moduleRef: ModuleRef,
  ) {}

  onModuleInit(): void {
    const service = findLockService(this.moduleRef, 'LockTracingModule');
    this.#detach ??= new LockTracing(this.options).attach(service);
  }

  onApplicationShutdown(): void {
    this.#detach?.();
    this.#detach = undefined;
  }
}

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
      providers: [{ provide: LOCK_TRACING_OPTIONS, useValue: checked }, LockTracingSubscriber],
    };
  }
}
