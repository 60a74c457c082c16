import { LockArgumentError } from '../core/errors.js';
import type {
  LockKeyFn,
  WithLockDecoratorOptions,
  WithLockMethodDecorator,
  WithLockOptions,
} from '../interfaces/with-lock-options.interface.js';
import { messages } from '../core/messages.js';
import { checkKeys, wrapLocked } from '../utils/wrap-method.js';
import {
  validateBoolean,
  validateFunction,
  validateKey,
  validateLabel,
  validateOnLockLost,
  validateOptions,
  validateTtl,
  validateWait,
  WITH_LOCK_OPTIONS,
} from '../core/validate.js';

/** Option names of the options-object form `@WithLock({ key, ... })`. */
const WITH_LOCK_OBJECT_OPTIONS = ['key', 'ttl', 'wait', ...WITH_LOCK_OPTIONS] as const;

/** What `@WithLock` recorded on a method, readable with `Reflect.getMetadata(WITH_LOCK_METADATA, fn)`. @internal */
export interface WithLockDefinition {
  /** The lock key, or the key function. */
  readonly key: string | LockKeyFn;
  /** The checked ttl, ms; unset: the module's. */
  readonly ttl?: number;
  /** The checked wait, ms; unset: the module's. */
  readonly wait?: number;
  /** The checked, frozen options. */
  readonly options: WithLockOptions;
}

/**
 * Runs the method while holding a distributed lock. Works on any provider or controller method,
 * on BullMQ processors (`WorkerHost.process`) and scheduled methods, because it wraps the method
 * where it is declared and finds, at call time, the LockService that the instance's Nest application
 * resolves through its container (a `LockService` replaced with `overrideProvider` in a test included).
 *
 * This is the options-object form, `@WithLock({ key, ttl, wait, onTimeout, requeueDelay, onLockLost, autoExtend, maxHold, label })`;
 * the positional form `@WithLock(key, ttl?, wait?, options?)` does the same.
 *
 * @typeParam A the parameters of the key function (and of an `onTimeout` function), inferred from it.
 * @param options `key` (the lock key, or a function of the method's arguments, `this` being the
 *   instance, returning one key or several, taken all-or-nothing), `ttl` (ms; default: the module's;
 *   a heartbeat extends it while the method runs), `wait` (ms; default: the module's; 0 = one attempt),
 *   and the {@link WithLockOptions}; any other name is refused. Typed: a key function whose parameters
 *   the method's arguments do not satisfy is a compile error.
 * @returns a method decorator.
 * @throws LockArgumentError at declaration when an option is invalid (a ttl outside 10..2^31-1 ms, a
 *   wait outside 0..2^31-1 ms, an unknown option, a wrong option value, a second argument after the
 *   options object) or when it decorates something that is not a method. At call time, a key function
 *   that returns no key (or a Promise: it must be synchronous) rejects with LockArgumentError before
 *   Redis is touched.
 *
 * Only methods declared to return a Promise can be decorated (a compile error otherwise): the wrapper
 * always returns one, and a decorator cannot change the method's declared type. In plain JavaScript
 * a synchronous method works, but its callers get a Promise. Its result and errors pass through
 * unchanged; a lock that cannot be had rejects with LockTimeoutError (or what `onTimeout` says).
 *
 * @example
 * ```ts
 * @Processor('payments')
 * export class PaymentsProcessor extends WorkerHost {
 *   @WithLock({ key: (job: Job<Payment>) => `account:${job.data.accountId}`, ttl: 10_000, wait: 2_000, onTimeout: 'requeue' })
 *   async process(job: Job<Payment>) { ... }
 * }
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types (a narrower unknown[] would not accept them)
export function WithLock<A extends unknown[] = any[]>(options: WithLockDecoratorOptions<A>): WithLockMethodDecorator<A>;
/**
 * Runs the method while holding a distributed lock: the positional form,
 * `@WithLock(key, ttl?, wait?, options?)`, of the options-object form above (same behaviour, same checks).
 *
 * @typeParam A the parameters of the key function (and of an `onTimeout` function), inferred from it.
 * @param key the lock key, or a function of the method's arguments (`this` is the instance) that
 *   returns one key or several (taken all-or-nothing). Typed: a key function whose parameters the
 *   method's arguments do not satisfy is a compile error.
 * @param ttl lock time to live in ms (default: the module's). A heartbeat extends it while the method runs.
 * @param wait how long to wait for a busy lock, ms (default: the module's); 0 = one attempt.
 * @param options `onTimeout` (`'throw'`, `'requeue'` for BullMQ jobs, or a function), `requeueDelay`,
 *   `onLockLost`, `autoExtend`, `maxHold`, `label` (for events and metrics; default `Class.method`); any other name is refused.
 * @returns a method decorator.
 * @throws LockArgumentError at declaration when an argument is invalid (a ttl outside 10..2^31-1 ms, a
 *   wait outside 0..2^31-1 ms, an unknown option, a wrong option value) or when it decorates something
 *   that is not a method; at call time, as the options-object form.
 *
 * @example
 * ```ts
 * @Cron('0 * * * *')
 * @WithLock('reports:hourly', 60_000, 0)
 * async hourlyReport(): Promise<void> { ... }
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types (a narrower unknown[] would not accept them)
export function WithLock<A extends unknown[] = any[]>(
  key: string | LockKeyFn<A>,
  ttl?: number,
  wait?: number,
  options?: WithLockOptions<A>,
): WithLockMethodDecorator<A>;
export function WithLock(
  keyOrOptions: string | LockKeyFn | WithLockDecoratorOptions,
  ...rest: [ttl?: number, wait?: number, options?: WithLockOptions]
): WithLockMethodDecorator {
  const where = '@WithLock()';
  let key: unknown;
  let ttl: number | undefined;
  let wait: number | undefined;
  let options: unknown;
  if (typeof keyOrOptions === 'object' && keyOrOptions !== null && !Array.isArray(keyOrOptions)) {
    if (rest.length > 0) {
      throw new LockArgumentError(
        messages.argumentInvalid(where, 'a second argument', 'is not taken after an options object (put ttl and wait in it)', rest[0]),
      );
    }
    const given = validateOptions<WithLockDecoratorOptions>(where, keyOrOptions, WITH_LOCK_OBJECT_OPTIONS);
    ({ key, ttl, wait } = given);
    const { key: _key, ttl: _ttl, wait: _wait, ...lockOptions } = given;
    options = lockOptions;
  } else {
    key = keyOrOptions;
    [ttl, wait, options = {}] = rest;
  }
  if (typeof key === 'string') validateKey(key);
  else if (typeof key !== 'function') throw new LockArgumentError(messages.decoratorKeyInvalid(where, key));
  const keyFn = key as string | LockKeyFn;
  const ttlMs = ttl === undefined ? undefined : validateTtl(where, ttl);
  const waitMs = wait === undefined ? undefined : validateWait(where, wait);
  const checked = checkOptions(options);

  return ((target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor) =>
    void wrapLocked(target, propertyKey, descriptor, {
      decorator: where,
      keys: (self, args, method) => (typeof keyFn === 'string' ? keyFn : checkKeys(where, method, keyFn.apply(self, args))),
      ttl: ttlMs,
      wait: waitMs,
      options: checked,
      definition: { key: keyFn, ttl: ttlMs, wait: waitMs, options: checked } satisfies WithLockDefinition,
    })) as WithLockMethodDecorator;
}

/** The fourth argument of `@WithLock`, checked at declaration; returns a frozen copy (later changes to the caller's object cannot skip the checks). */
function checkOptions(options: unknown): WithLockOptions {
  const where = '@WithLock()';
  const given = validateOptions<WithLockOptions>(where, options, WITH_LOCK_OPTIONS);
  const { onTimeout, requeueDelay, onLockLost, autoExtend, maxHold, label, tenant } = given;
  if (onTimeout !== undefined && onTimeout !== 'throw' && onTimeout !== 'requeue' && typeof onTimeout !== 'function') {
    throw new LockArgumentError(messages.argumentInvalid(where, 'onTimeout', "must be 'throw', 'requeue' or a function", onTimeout));
  }
  const checked: WithLockOptions = {};
  if (onTimeout !== undefined) checked.onTimeout = onTimeout;
  if (requeueDelay !== undefined) checked.requeueDelay = validateWait(where, requeueDelay, 'requeueDelay');
  if (onLockLost !== undefined) checked.onLockLost = validateOnLockLost(where, onLockLost);
  if (autoExtend !== undefined) checked.autoExtend = validateBoolean(where, 'autoExtend', autoExtend);
  if (maxHold !== undefined) checked.maxHold = validateTtl(where, maxHold, 'maxHold');
  if (label !== undefined) checked.label = validateLabel(where, label);
  if (tenant !== undefined) {
    validateFunction(where, 'tenant', tenant);
    checked.tenant = tenant;
  }
  return Object.freeze(checked);
}
