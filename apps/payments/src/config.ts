/**
 * Runtime configuration of the payments sample, read once from the environment by the
 * entry points and passed to {@link AppModule.forRoot}. Tests build it directly.
 */
export interface PaymentsConfig {
  /** Redis for balances, locks and the queue. */
  redisUrl: string;
  /** Prefix of every key this app writes (accounts, stats, locks), so apps can share one Redis. */
  keyPrefix: string;
  /** BullMQ key prefix of the `payments` queue. */
  queuePrefix: string;
  /** `'api'`: HTTP only; `'worker'`: processes payments, no HTTP; `'all'`: both in one process. */
  role: 'api' | 'worker' | 'all';
  /** `false` runs the payment processor without the lock, to show the race (`PAYMENTS_NO_LOCK=1`). */
  lock: boolean;
  /** The deliberate gap between reading and writing a balance, in ms. */
  applyDelayMs: number;
  /** Time spent "sending the receipt" after a payment is applied, in ms (tests use it to kill a worker mid-job). */
  receiptDelayMs: number;
  /**
   * A process without the HTTP API (a worker) serves `GET /metrics` on this port when set
   * (`PAYMENTS_METRICS_PORT`; 0 picks a free one), so every process's figures can be scraped.
   */
  metricsPort?: number;
}

/** Injection token of the {@link PaymentsConfig}. */
export const PAYMENTS_CONFIG = Symbol('PAYMENTS_CONFIG');

/** Name of the BullMQ queue that carries payments. */
export const PAYMENTS_QUEUE = 'payments';

function int(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer (ms or count), got "${raw}"`);
  }
  return value;
}

/**
 * Builds the configuration from environment variables.
 * @param role - which half of the app this process runs
 * @param env - defaults to `process.env`
 * @throws Error naming the variable when a number is malformed
 */
export function configFromEnv(role: PaymentsConfig['role'], env: NodeJS.ProcessEnv = process.env): PaymentsConfig {
  return {
    redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379',
    keyPrefix: env.PAYMENTS_KEY_PREFIX || 'payments:',
    queuePrefix: env.PAYMENTS_QUEUE_PREFIX || 'bull',
    role,
    lock: env.PAYMENTS_NO_LOCK !== '1',
    applyDelayMs: int(env, 'PAYMENTS_APPLY_DELAY_MS', 5),
    receiptDelayMs: int(env, 'PAYMENTS_RECEIPT_DELAY_MS', 0),
    ...(env.PAYMENTS_METRICS_PORT ? { metricsPort: int(env, 'PAYMENTS_METRICS_PORT', 0) } : {}),
  };
}

// Decorator arguments (`@Processor`, `@WithLock`, `@RouteLock`) are evaluated once, when the
// class is defined, so the tuning below comes from the environment at import time rather than
// from PaymentsConfig. Every process of one deployment must agree on it.
const env = process.env;

/** Lock on `account:<id>` held while a payment job is applied. */
export const PAYMENT_LOCK = {
  ttl: int(env, 'PAYMENTS_LOCK_TTL_MS', 10_000),
  wait: int(env, 'PAYMENTS_LOCK_WAIT_MS', 2_000),
  requeueDelay: int(env, 'PAYMENTS_REQUEUE_DELAY_MS', 200),
} as const;

/**
 * `@Idempotent` on the payment job (keyed by the payment id). While a first run is applying a payment it
 * holds a lease with a heartbeat: a duplicate waits for it (at most `wait`) and gets the same result, and
 * a worker that died mid-job frees the payment within `leaseTtl`, so its re-delivered job runs again.
 */
export const PAYMENT_IDEMPOTENCY = {
  // A label of its own for the idempotent-call counter (the default would be `PaymentProcessor.process`,
  // the account lock's); the lease's lock events are labelled `idempotency:payment-job`.
  label: 'payment-job',
  leaseTtl: PAYMENT_LOCK.ttl,
  wait: int(env, 'PAYMENTS_IDEMPOTENCY_WAIT_MS', PAYMENT_LOCK.ttl),
} as const;

/** `Idempotency-Key` of `POST /payments` and provider event ids of `POST /webhooks/payments`: results kept 24 h. */
export const HTTP_IDEMPOTENCY = {
  ttl: int(env, 'PAYMENTS_IDEMPOTENCY_TTL_MS', 24 * 60 * 60 * 1000),
} as const;

/** Lock on `account:<id>` held by `POST /accounts/:id/adjust` and by transfers (per account). */
export const ACCOUNT_LOCK = {
  ttl: int(env, 'PAYMENTS_ACCOUNT_LOCK_TTL_MS', 5_000),
  wait: int(env, 'PAYMENTS_ACCOUNT_LOCK_WAIT_MS', 1_000),
} as const;

/** BullMQ worker options of the payment processor. */
export const WORKER_OPTIONS = {
  concurrency: int(env, 'PAYMENTS_WORKER_CONCURRENCY', 8),
  lockDuration: int(env, 'PAYMENTS_WORKER_LOCK_DURATION_MS', 30_000),
  stalledInterval: int(env, 'PAYMENTS_WORKER_STALLED_INTERVAL_MS', 30_000),
} as const;
