import { Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { LockInterceptor } from './interceptors/lock.interceptor.js';
import { ConfigurableLockModule } from './lock.module-definition.js';
import { LockService } from './lock.service.js';

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
  providers: [LockService, LockInterceptor],
  exports: [LockService, LockInterceptor],
})
export class LockModule extends ConfigurableLockModule {}
