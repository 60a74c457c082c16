import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { PAYMENTS_CONFIG, type PaymentsConfig } from './config.js';

/** Injection token of the app's own ioredis client (balances and stats). */
export const REDIS = Symbol('REDIS');

/** Provides one ioredis client for the app's data, and closes it on shutdown. */
@Global()
@Module({
  providers: [
    {
      provide: REDIS,
      inject: [PAYMENTS_CONFIG],
      useFactory: (config: PaymentsConfig) => new Redis(config.redisUrl),
    },
  ],
  exports: [REDIS],
})
export class RedisModule implements OnApplicationShutdown {
  constructor(@Inject(REDIS) private readonly redis: Redis) {}

  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
