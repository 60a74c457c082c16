import { type DynamicModule, Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { LockInterceptor } from './interceptors/lock.interceptor.js';
import { ConfigurableLockModule, type LockModuleAsyncOptions, type LockModuleRootOptions } from './lock.module-definition.js';
import { LockRegistrar, LockService } from './lock.service.js';
import { IdempotencyService } from './idempotency/idempotency.service.js';

/**
 * Distributed locks for a Nest application.
 *
 * @example
 * ```ts
 * @Module({
 *   imports: [LockModule.forRoot({ redis: process.env.REDIS_URL, ttl: 10_000, wait: 2_000, isGlobal: true })],
 * })
 * export class AppModule {}
 * ```
 * or `LockModule.forRootAsync({ imports: [ConfigModule], inject: [ConfigService], useFactory: (c) => ({ redis: c.get('REDIS_URL') }) })`.
 */
@Module({
  imports: [DiscoveryModule],
  // LockRegistrar tells @WithLock/@RouteLock methods which LockService their app's container resolves
  // (a replaced one too, in tests with overrideProvider).
  providers: [LockService, LockRegistrar, LockInterceptor, IdempotencyService],
  exports: [LockService, LockInterceptor, IdempotencyService],
})
export class LockModule extends ConfigurableLockModule {
  /**
   * Locks on `options.redis` (default `redis://127.0.0.1:6379`) with the defaults of every other option.
   * @throws LockArgumentError at boot for a bad option, naming it and its value.
   */
  static override forRoot(options: LockModuleRootOptions = {}): DynamicModule {
    return super.forRoot(options);
  }

  /**
   * Options from a factory: `useFactory` + `inject`, `useClass` or `useExisting` (a `LockOptionsFactory`).
   * @example
   * ```ts
   * LockModule.forRootAsync({ imports: [ConfigModule], inject: [ConfigService],
   *   useFactory: (config: ConfigService) => ({ redis: config.get('REDIS_URL') }) })
   * ```
   */
  static override forRootAsync(options: LockModuleAsyncOptions): DynamicModule {
    return super.forRootAsync(options);
  }
}
