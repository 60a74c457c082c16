import { Processor, WorkerHost } from '@nestjs/bullmq';
import { Inject, Injectable } from '@nestjs/common';
import { type Job, UnrecoverableError } from 'bullmq';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentLock, Idempotent, WithLock } from 'nestjs-redis-lock';
import { AccountsRepository } from '../accounts/accounts.repository.js';
import { PAYMENT_IDEMPOTENCY, PAYMENT_LOCK, PAYMENTS_CONFIG, PAYMENTS_QUEUE, type PaymentsConfig, WORKER_OPTIONS } from '../config.js';
import { accountVanished, fencedWrite } from '../messages.js';
import { PaymentStats } from './payment-stats.js';
import type { PaymentJobData, PaymentJobResult } from './payments.dto.js';

/**
 * Applies one payment with a deliberately non-atomic read-modify-write: read the balance,
 * wait `applyDelayMs` (standing in for a fraud check or a call to a ledger), write the sum.
 * Two jobs for the same account interleaving here lose an update, unless a lock serialises them.
 *
 * Safe when a worker dies mid-job and BullMQ re-delivers the stalled job: the write is one
 * Lua script that also records the payment id as applied (a re-delivery finds it and does
 * nothing) and that refuses a write whose fencing token is older than the last one recorded
 * for the account (a holder whose lock expired while it was paused cannot overwrite newer work).
 */
@Injectable()
export abstract class PaymentApplier extends WorkerHost {
  constructor(
    private readonly accounts: AccountsRepository,
    private readonly stats: PaymentStats,
    @Inject(PAYMENTS_CONFIG) private readonly config: PaymentsConfig,
  ) {
    super();
  }

  protected async apply(job: Job<PaymentJobData>, fencingToken?: number): Promise<PaymentJobResult> {
    const { paymentId, accountId, amount } = job.data;
    const lockWaitMs = Math.max(0, Date.now() - (job.processedOn ?? Date.now()));
    // Every start counts in attemptsStarted; those that neither failed nor stalled were requeues.
    const requeues = Math.max(0, job.attemptsStarted - 1 - job.attemptsMade - job.stalledCounter);
    if (await this.accounts.isApplied(accountId, paymentId)) return { outcome: 'duplicate', lockWaitMs, requeues };

    const balance = await this.accounts.getBalance(accountId);
    if (balance === null) throw new UnrecoverableError(accountVanished(accountId));
    await sleep(this.config.applyDelayMs);
    const outcome = await this.accounts.commitPayment(accountId, paymentId, balance + amount, fencingToken);
    if (outcome === 'missing') throw new UnrecoverableError(accountVanished(accountId));
    // A fenced write changed nothing; failing the attempt lets BullMQ retry it with a fresh lock.
    if (outcome === 'fenced') throw new Error(fencedWrite(accountId));
    if (outcome === 'applied') await this.stats.recordApplied(lockWaitMs, requeues);

    await sleep(this.config.receiptDelayMs);
    return { outcome, lockWaitMs, requeues };
  }
}

/**
 * `@Idempotent` on the job, keyed by the payment id: a job delivered twice for one payment (a producer
 * that enqueued it again under another job id, a manual retry of a completed job) returns the first
 * run's result without applying it again, and a duplicate that arrives while the first runs waits for it.
 * It sits above `@WithLock`, so a replay takes no account lock at all, and a requeue on contention
 * (thrown through it) stores nothing. Only runs that end store their result: a worker killed mid-job
 * stores none, its lease expires within `leaseTtl` and the re-delivered job runs again; that is why
 * the Lua `isApplied`/commit check stays below it (defence in depth: it is what makes that re-run
 * harmless when the first run had already written the balance, and it also holds when the
 * idempotency record has expired or was never written because Redis failed after the commit).
 */
const idempotentPayment = Idempotent((job: Job<PaymentJobData>) => `payment:${job.data.paymentId}`, PAYMENT_IDEMPOTENCY);

/**
 * The payment processor: one payment at a time per account, across every worker process.
 * When the account stays locked for longer than the wait, the job goes back to the queue
 * (delayed by `requeueDelay`) instead of failing, and this worker takes other work meanwhile.
 */
@Processor(PAYMENTS_QUEUE, WORKER_OPTIONS)
export class PaymentProcessor extends PaymentApplier {
  @idempotentPayment
  @WithLock((job: Job<PaymentJobData>) => `account:${job.data.accountId}`, PAYMENT_LOCK.ttl, PAYMENT_LOCK.wait, {
    onTimeout: 'requeue',
    requeueDelay: PAYMENT_LOCK.requeueDelay,
  })
  override async process(job: Job<PaymentJobData>, _token?: string): Promise<PaymentJobResult> {
    return this.apply(job, currentLock()!.fencingToken);
  }
}

/**
 * The same processor without the lock (`PAYMENTS_NO_LOCK=1`): shows the lost updates. Still idempotent
 * per payment: that dedupes a payment, it does not serialise an account, so the race stays.
 */
@Processor(PAYMENTS_QUEUE, WORKER_OPTIONS)
export class UnlockedPaymentProcessor extends PaymentApplier {
  @idempotentPayment
  override async process(job: Job<PaymentJobData>, _token?: string): Promise<PaymentJobResult> {
    return this.apply(job);
  }
}
