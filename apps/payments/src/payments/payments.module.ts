import { BullModule } from '@nestjs/bullmq';
import { type DynamicModule, Module } from '@nestjs/common';
import { AccountsModule } from '../accounts/accounts.module.js';
import { PAYMENTS_QUEUE } from '../config.js';
import { PaymentStats } from './payment-stats.js';
import { PaymentProcessor, UnlockedPaymentProcessor } from './payment.processor.js';
import { PaymentsController } from './payments.controller.js';
import { PaymentsService } from './payments.service.js';
import { WebhooksController } from './webhooks.controller.js';

/** Options of {@link PaymentsModule.register}. */
export interface PaymentsModuleOptions {
  /** Run a worker on the `payments` queue in this process. */
  processJobs: boolean;
  /** Process with the lock (normal) or without it (to show the race). */
  lock: boolean;
}

/**
 * The `payments` queue, its HTTP producers (`POST /payments`, `POST /webhooks/payments`) and its processor. Only a processor class that is
 * registered as a provider gets a BullMQ worker, so choosing the class is all the no-lock switch does.
 */
@Module({})
export class PaymentsModule {
  static register(options: PaymentsModuleOptions): DynamicModule {
    const processor = options.lock ? PaymentProcessor : UnlockedPaymentProcessor;
    return {
      module: PaymentsModule,
      imports: [BullModule.registerQueue({ name: PAYMENTS_QUEUE }), AccountsModule],
      controllers: [PaymentsController, WebhooksController],
      providers: [PaymentsService, PaymentStats, ...(options.processJobs ? [processor] : [])],
    };
  }
}
