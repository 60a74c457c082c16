import { LockArgumentError } from '../core/errors.js';
import { validateKey } from '../core/validate.js';
import type { LockKeyFnFits } from '../interfaces/with-lock-options.interface.js';
import { messages } from '../core/messages.js';
import { resolveLockService } from '../lock.registry.js';
import { checkKeys } from '../utils/wrap-method.js';
import { checkIdempotencyOptions, fingerprintOf, IDEMPOTENCY_OPTIONS, type IdempotencyOptions } from './idempotency.js';
import { idempotencyOf } from './idempotency.service.js';

/** Options of `@Idempotent`: those of `IdempotencyService.run()`, with `fingerprint` taken from the call's arguments. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types
export interface IdempotentOptions<A extends unknown[] = any[]> extends Omit<IdempotencyOptions, 'fingerprint' | 'tenant'> {
  /**
   * `true`: the method's arguments are the fingerprint (a key reused with other arguments is refused with
   * IdempotencyKeyReuseError); a function: its result of the arguments is (e.g. `(job) => job.data`).
   * Default: no fingerprint.
   */
  fingerprint?: boolean | ((...args: A) => unknown);
  /**
   * The tenant of a call, from the method's arguments (e.g. `(job) => job.data.tenantId`): its lease and
   * stored result are namespaced under it (docs/tenancy.md). `undefined`: the module's resolver; `null`: none.
   */
  tenant?: (...args: A) => string | null | undefined;
}

/** Builds the idempotency key of a call from the method's arguments; `this` is the instance. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types
export type IdempotencyKeyFn<A extends unknown[] = any[]> = (...args: A) => string;

/**
 * What `@Idempotent(...)` returns: a decorator for methods that return a Promise and whose arguments the
 * key function (and a `fingerprint` function) accepts; a mismatch is a compile error on the method.
 * @typeParam A the parameters of the key function (and of a `fingerprint` function).
 * @typeParam M the decorated method's type: it must return a Promise and take arguments that `A` accepts.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types
export type IdempotentMethodDecorator<A extends unknown[] = any[]> = <M extends (...args: any[]) => Promise<unknown>>(
  target: object,
  propertyKey: string | symbol,
  descriptor: TypedPropertyDescriptor<M> & LockKeyFnFits<A, M>,
) => void;

/**
 * Makes a provider method idempotent: the first call with a key runs it and stores its (JSON) result;
 * a concurrent duplicate waits for the first and gets the same result; a later one gets the stored
 * result without running. Works on any provider, controller or BullMQ processor method (for a job,
 * key it by the job's data, e.g. a webhook event id, so a re-delivered or duplicated job applies once).
 * See {@link IdempotencyService.run} for the semantics.
 *
 * @param key the idempotency key, or a function of the method's arguments returning it.
 * @param options ttl (default 24 h), leaseTtl, wait, inFlight, fingerprint, storeErrors, label (default `Class.method`).
 * @throws LockArgumentError at declaration for a bad option; at call time for a bad key, before Redis is touched.
 *
 * @example
 * ```ts
 * @Processor('webhooks')
 * export class WebhookProcessor extends WorkerHost {
 *   @Idempotent((job: Job<StripeEvent>) => `stripe:${job.data.id}`, { fingerprint: (job: Job<StripeEvent>) => job.data })
 *   async process(job: Job<StripeEvent>) { ... }
 * }
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types
export function Idempotent<A extends unknown[] = any[]>(
  key: string | IdempotencyKeyFn<A>,
  options?: IdempotentOptions<A>,
): IdempotentMethodDecorator<A> {
  const where = '@Idempotent()';
  if (typeof key === 'string') validateKey(key);
  else if (typeof key !== 'function') throw new LockArgumentError(messages.decoratorKeyInvalid(where, key));
  const checked = checkIdempotencyOptions(where, options, IDEMPOTENCY_OPTIONS);
  const fingerprint = checked.fingerprint;
  if (fingerprint !== undefined && typeof fingerprint !== 'boolean' && typeof fingerprint !== 'function') {
    throw new LockArgumentError(
      messages.argumentInvalid(where, 'fingerprint', 'must be true, false or a function of the arguments', fingerprint),
    );
  }
  const tenantFn = checked.tenant;
  if (tenantFn !== undefined && typeof tenantFn !== 'function') {
    throw new LockArgumentError(messages.argumentInvalid(where, 'tenant', 'must be a function of the arguments', tenantFn));
  }
  return ((target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor) => {
    const owner = typeof target === 'function' ? target : (target as { constructor?: { name?: string } }).constructor;
    const method = `${owner?.name || 'anonymous'}.${String(propertyKey)}`;
    const original = descriptor?.value as ((...args: unknown[]) => unknown) | undefined;
    if (typeof original !== 'function') {
      throw new LockArgumentError(messages.decoratorNotMethod(where, method, 'not a method'));
    }
    const label = checked.label ?? method;
    const wrapped = new Proxy(original, {
      apply: async (fn, self: unknown, args: unknown[]) => {
        const callKey = typeof key === 'string' ? key : checkKeys(where, method, (key as (...a: unknown[]) => unknown).apply(self, args));
        if (typeof callKey !== 'string')
          throw new LockArgumentError(messages.keyFnReturned(where, method, callKey, 'an idempotency key is one string'));
        const print =
          fingerprint === true
            ? fingerprintOf(where, args)
            : typeof fingerprint === 'function'
              ? fingerprintOf(where, (fingerprint as (...a: unknown[]) => unknown).apply(self, args))
              : undefined;
        const service = resolveLockService(self, method);
        const engine = idempotencyOf(service);
        // A LockService mock (unit tests): no store to keep results in; the method runs every time.
        if (!engine) return Reflect.apply(fn, self, args);
        const tenant = tenantFn === undefined ? undefined : (tenantFn as (...a: unknown[]) => unknown).apply(self, args);
        const outcome = await engine.execute(where, callKey, { ...checked, label, fingerprint: print, tenant }, () =>
          Reflect.apply(fn, self, args),
        );
        return outcome.value;
      },
    });
    for (const metadataKey of Reflect.getOwnMetadataKeys(original)) {
      Reflect.defineMetadata(metadataKey, Reflect.getOwnMetadata(metadataKey, original), wrapped);
    }
    descriptor.value = wrapped;
  }) as IdempotentMethodDecorator<A>;
}
