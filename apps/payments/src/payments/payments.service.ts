import { InjectQueue } from '@nestjs/bullmq';
import { Injectable } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { randomUUID } from 'node:crypto';
import { AccountsService } from '../accounts/accounts.service.js';
import { PAYMENTS_QUEUE } from '../config.js';
import type { PaymentJobData, PaymentJobResult } from './payments.dto.js';

/** A payment as `POST /payments` and the webhook answer it: queued, applied later by a worker. */
export type QueuedPayment = PaymentJobData & { status: 'queued' };

/** Payment use cases shared by the API and the webhook: check the account, enqueue the job. */
@Injectable()
export class PaymentsService {
  constructor(
    @InjectQueue(PAYMENTS_QUEUE) private readonly queue: Queue<PaymentJobData, PaymentJobResult>,
    private readonly accounts: AccountsService,
  ) {}

  /**
   * Enqueues a payment under a new payment id (the job id). Not idempotent by itself: every call
   * creates a payment, so callers that may be retried wrap it (`@IdempotentRoute`, `IdempotencyService.run`).
   * @throws NotFoundException for an unknown account, so nothing is queued that cannot apply
   */
  async submit(accountId: string, amount: number, reference?: string): Promise<QueuedPayment> {
    await this.accounts.get(accountId);
    const payment: PaymentJobData = { paymentId: randomUUID(), accountId, amount };
    if (reference !== undefined) payment.reference = reference;
    await this.queue.add('payment', payment, {
      jobId: payment.paymentId,
      attempts: 5,
      backoff: { type: 'exponential', delay: 100 },
    });
    return { ...payment, status: 'queued' };
  }
}
