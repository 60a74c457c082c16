import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { PAYMENTS_CONFIG, type PaymentsConfig } from '../config.js';
import { REDIS } from '../redis.module.js';

/** What `GET /payments/stats` returns. */
export interface PaymentStatsView {
  applied: number;
  /** Times a job was put back on the queue because its account stayed locked. */
  requeues: number;
  lockWaitMs: { p50: number; p99: number; max: number } | null;
}

/**
 * Demo instrumentation, shared by every process through Redis: a counter of contention
 * requeues and a list of lock waits (one entry per applied payment).
 */
@Injectable()
export class PaymentStats {
  private readonly requeuesKey: string;
  private readonly lockWaitKey: string;

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(PAYMENTS_CONFIG) config: PaymentsConfig,
  ) {
    this.requeuesKey = `${config.keyPrefix}stats:requeues`;
    this.lockWaitKey = `${config.keyPrefix}stats:lock-wait-ms`;
  }

  async recordApplied(lockWaitMs: number, requeues: number): Promise<void> {
    const multi = this.redis.multi().rpush(this.lockWaitKey, lockWaitMs);
    if (requeues > 0) multi.incrby(this.requeuesKey, requeues);
    await multi.exec();
  }

  async read(): Promise<PaymentStatsView> {
    const [requeues, waits] = await Promise.all([this.redis.get(this.requeuesKey), this.redis.lrange(this.lockWaitKey, 0, -1)]);
    const sorted = waits.map(Number).sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
    return {
      applied: sorted.length,
      requeues: Number(requeues ?? 0),
      lockWaitMs: sorted.length ? { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1]! } : null,
    };
  }
}
