import { BullModule } from '@nestjs/bullmq';
import { type DynamicModule, Module, ValidationPipe } from '@nestjs/common';
import { APP_PIPE } from '@nestjs/core';
import { LockModule } from 'nestjs-redis-lock';
import { AccountsModule } from './accounts/accounts.module.js';
import { PAYMENTS_CONFIG, type PaymentsConfig } from './config.js';
import { ObservabilityModule } from './observability/observability.module.js';
import { PaymentsModule } from './payments/payments.module.js';
import { RedisModule } from './redis.module.js';

/**
 * The payments app. `config.role` decides whether this process runs the payment worker;
 * whether it serves HTTP is up to the entry point (`main.ts` listens, `worker.ts` does not, but
 * serves `/metrics` and `/health` on `config.metricsPort` when set).
 *
 * @example
 * const app = await NestFactory.create(AppModule.forRoot(configFromEnv('api')));
 */
@Module({})
export class AppModule {
  static forRoot(config: PaymentsConfig): DynamicModule {
    return {
      module: AppModule,
      global: true,
      imports: [
        RedisModule,
        LockModule.forRoot({ redis: config.redisUrl, keyPrefix: `${config.keyPrefix}lock:`, isGlobal: true }),
        BullModule.forRoot({ connection: { url: config.redisUrl }, prefix: config.queuePrefix }),
        AccountsModule,
        PaymentsModule.register({ processJobs: config.role !== 'api', lock: config.lock }),
        ObservabilityModule.forRoot(),
      ],
      providers: [
        { provide: PAYMENTS_CONFIG, useValue: config },
        {
          provide: APP_PIPE,
          useValue: new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true }),
        },
      ],
      exports: [PAYMENTS_CONFIG],
    };
  }
}
