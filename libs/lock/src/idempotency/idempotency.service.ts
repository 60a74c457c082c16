import { Inject, Injectable } from '@nestjs/common';
import { LockService } from '../lock.service.js';
import { lockServiceInternals } from '../lock.registry.js';
import { checkIdempotencyOptions, fingerprintOf, Idempotency, type IdempotencyOptions } from './idempotency.js';

/** One engine per LockClient, shared by the service and the decorator. @internal */
const engines = new WeakMap<object, Idempotency>();

/** The idempotency engine of a real LockService; undefined for a mock. @internal */
export function idempotencyOf(service: object): Idempotency | undefined {
  const client = lockServiceInternals.get(service)?.client;
  if (!client) return undefined;
  let engine = engines.get(client);
  if (!engine) engines.set(client, (engine = new Idempotency(client)));
  return engine;
}

/**
 * Idempotent calls on the module's store: the first call with a key runs the work and stores its
 * result; a duplicate that arrives while it runs waits for it (woken when it finishes) and gets the
 * same result; a later duplicate gets the stored result without running anything. While it runs, the
 * first call holds a lease with a heartbeat, not a 24-hour marker: if its process dies, a retry runs
 * once the lease's ttl has passed. With a LockService mock (unit tests) the work runs every time. A call that throws stores nothing (a retry runs again) unless
 * `storeErrors` picks the error.
 *
 * @example
 * ```ts
 * constructor(private readonly idempotency: IdempotencyService) {}
 *
 * submit(key: string, payment: NewPayment) {
 *   return this.idempotency.run(`payment:${key}`, { fingerprint: payment }, () => this.payments.create(payment));
 * }
 * ```
 */
@Injectable()
export class IdempotencyService {
  readonly #locks: LockService;

  constructor(@Inject(LockService) locks: LockService) {
    this.#locks = locks;
  }

  /**
   * Runs `fn` once for `key` and returns its result, or the result the first call with `key` stored.
   * The result must be JSON data (checked: a Date, Map, BigInt … is refused with IdempotencyResultError
   * and nothing is stored); it is replayed as parsed JSON.
   * @throws IdempotencyInFlightError when the first call is still running (after `wait`, or at once with `inFlight: 'reject'`).
   * @throws IdempotencyKeyReuseError when `fingerprint` differs from the first call's.
   * @throws IdempotencyStoredError replaying an error the first call threw and `storeErrors` kept.
   * @throws LockArgumentError for a bad key or option, before Redis is touched.
   */
  async run<T>(key: string, options: IdempotencyOptions | undefined, fn: () => Promise<T> | T): Promise<T> {
    const where = 'IdempotencyService.run()';
    const checked = checkIdempotencyOptions(where, options);
    const fingerprint = checked.fingerprint === undefined ? undefined : fingerprintOf(where, checked.fingerprint);
    const engine = idempotencyOf(this.#locks);
    // A LockService mock (overrideProvider in unit tests): no store to keep results in; the work runs every time.
    if (!engine) return fn();
    return (await engine.execute(where, key, { ...checked, fingerprint }, fn)).value;
  }
}
