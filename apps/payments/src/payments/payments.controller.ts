import { InjectQueue } from '@nestjs/bullmq';
import { Body, Controller, Get, HttpCode, NotFoundException, Param, Post } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { randomUUID } from 'node:crypto';
import { AccountsService } from '../accounts/accounts.service.js';
import { PAYMENTS_QUEUE } from '../config.js';
import { paymentNotFound } from '../messages.js';
import { PaymentStats, type PaymentStatsView } from './payment-stats.js';
import { CreatePaymentDto, type PaymentJobData, type PaymentJobResult } from './payments.dto.js';

/** `/payments`: accepted at once, applied by a worker. */
@Controller('payments')
export class PaymentsController {
  constructor(
    @InjectQueue(PAYMENTS_QUEUE) private readonly queue: Queue<PaymentJobData, PaymentJobResult>,
    private readonly accounts: AccountsService,
    private readonly stats: PaymentStats,
  ) {}

  /** Enqueues the payment; 404 for an unknown account, so nothing is queued that cannot apply. */
  @Post()
  @HttpCode(202)
  async create(@Body() body: CreatePaymentDto): Promise<PaymentJobData & { status: 'queued' }> {
    await this.accounts.get(body.accountId);
    const payment: PaymentJobData = { paymentId: randomUUID(), accountId: body.accountId, amount: body.amount };
    if (body.reference !== undefined) payment.reference = body.reference;
    await this.queue.add('payment', payment, {
      jobId: payment.paymentId,
      attempts: 5,
      backoff: { type: 'exponential', delay: 100 },
    });
    return { ...payment, status: 'queued' };
  }

  /** Requeue count and lock-wait percentiles across all workers (used by the demo). */
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
