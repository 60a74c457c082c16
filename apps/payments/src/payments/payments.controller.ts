import { InjectQueue } from '@nestjs/bullmq';
import { Body, Controller, Get, HttpCode, NotFoundException, Param, Post } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { IdempotentRoute } from 'nestjs-redis-lock';
import { HTTP_IDEMPOTENCY, PAYMENTS_QUEUE } from '../config.js';
import { paymentNotFound } from '../messages.js';
import { PaymentStats, type PaymentStatsView } from './payment-stats.js';
import { CreatePaymentDto, type PaymentJobData, type PaymentJobResult } from './payments.dto.js';
import { PaymentsService, type QueuedPayment } from './payments.service.js';

/** `/payments`: accepted at once, applied by a worker. */
@Controller('payments')
export class PaymentsController {
  constructor(
    @InjectQueue(PAYMENTS_QUEUE) private readonly queue: Queue<PaymentJobData, PaymentJobResult>,
    private readonly payments: PaymentsService,
    private readonly stats: PaymentStats,
  ) {}

  /**
   * Enqueues the payment; 404 for an unknown account, so nothing is queued that cannot apply.
   *
   * With an `Idempotency-Key` header, a client retry (same key, same body) gets the first answer (same
   * `paymentId`, `Idempotent-Replayed: true`) and queues nothing; the same key with another body is 422.
   * The header is optional, so clients that never retry keep working unchanged. There is no
   * authentication in this sample, so keys are one space for every client: a real API sets
   * `scope: (req) => req.user.id`. A refused request (400, 404) stores nothing: a retry runs again.
   */
  @Post()
  @HttpCode(202)
  @IdempotentRoute({ required: false, ttl: HTTP_IDEMPOTENCY.ttl })
  create(@Body() body: CreatePaymentDto): Promise<QueuedPayment> {
    return this.payments.submit(body.accountId, body.amount, body.reference);
  }

  /** Requeue count and lock-wait percentiles across all workers (kept from before `/metrics`; the tests read it). */
  @Get('stats')
  readStats(): Promise<PaymentStatsView> {
    return this.stats.read();
  }

  @Get(':id')
  async get(@Param('id') id: string): Promise<PaymentJobData & { state: string; result?: PaymentJobResult }> {
    const job = await this.queue.getJob(id);
    if (!job) throw new NotFoundException(paymentNotFound(id));
    const state = await job.getState();
    return { ...job.data, state, ...(job.returnvalue ? { result: job.returnvalue } : {}) };
  }
}
