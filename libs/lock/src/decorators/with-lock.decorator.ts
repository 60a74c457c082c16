import { LockArgumentError, LockTimeoutError } from '../errors/lock.errors.js';
import type { LockKeyFn, WithLockOptions } from '../interfaces/with-lock-options.interface.js';
import { WITH_LOCK_METADATA } from '../lock.constants.js';
import { messages } from '../lock.messages.js';
import { resolveLockClient } from '../lock.registry.js';
import {
  isThenable,
  normalizeKeys,
  validateBoolean,
  validateKey,
  validateOnLockLost,
  validateOptions,
  validateTtl,
  validateWait,
  WITH_LOCK_OPTIONS,
} from '../utils/validate.js';

/**
 * BullMQ moves a job to delayed, without counting a failed attempt, when `process` throws an error
 * named `DelayedError` after `job.moveToDelayed()`. Matching the name keeps bullmq an optional
 * dependency. @internal
 */
class RequeuedSignal extends Error {
  constructor() {
    super('Job requeued: its lock was busy');
    this.name = 'DelayedError';
  }
}

interface JobLike {
  id?: string;
  moveToDelayed(timestamp: number, token?: string): Promise<void>;
}

/** What `@WithLock` recorded on a method, readable with `Reflect.getMetadata(WITH_LOCK_METADATA, fn)`. @internal */
export interface WithLockDefinition {
  readonly key: string | LockKeyFn;
  readonly ttl?: number;
  readonly wait?: number;
  readonly options: WithLockOptions;
}

/**
 * Runs the method while holding a distributed lock. Works on any provider or controller method,
 * on BullMQ processors (`WorkerHost.process`) and scheduled methods, because it wraps the method
 * where it is declared and finds the LockService of the instance's Nest application at call time.
 *
 * @param key the lock key, or a function of the method's arguments (`this` is the instance) that
 *   returns one key or several (taken all-or-nothing).
 * @param ttl lock time to live in ms (default: the module's). A heartbeat extends it while the method runs.
 * @param wait how long to wait for a busy lock, ms (default: the module's); 0 = one attempt.
 * @param options `onTimeout` (`'throw'`, `'requeue'` for BullMQ jobs, or a function), `requeueDelay`,
 *   `onLockLost`, `autoExtend`, `maxHold`; any other name is refused.
 * @throws LockArgumentError at declaration when an argument is invalid (a ttl outside 10..2^31-1 ms, a
 *   wait outside 0..2^31-1 ms, an unknown option, a wrong option value) or when it decorates something
 *   that is not a method. At call time, a key function that returns no key (or a Promise: it must be
 *   synchronous) rejects with LockArgumentError before Redis is touched.
 *
 * The decorated method always returns a Promise. Its result and errors pass through unchanged; a
 * lock that cannot be had rejects with LockTimeoutError (or what `onTimeout` says).
 *
 * @example
 * ```ts
 * @Processor('payments')
 * export class PaymentsProcessor extends WorkerHost {
 *   @WithLock((job: Job<Payment>) => `account:${job.data.accountId}`, 10_000, 2_000, { onTimeout: 'requeue' })
 *   async process(job: Job<Payment>) { ... }
 * }
 * ```
 */
export function WithLock<A extends any[] = any[]>(
  key: string | LockKeyFn<A>,
  ttl?: number,
  wait?: number,
  options: WithLockOptions<A> = {},
): MethodDecorator {
  const where = '@WithLock()';
  if (typeof key === 'string') validateKey(key);
  else if (typeof key !== 'function') throw new LockArgumentError(messages.decoratorKeyInvalid(where, key));
  const ttlMs = ttl === undefined ? undefined : validateTtl(where, ttl);
  const waitMs = wait === undefined ? undefined : validateWait(where, wait);
  const checked = checkOptions(options);

  return (target, propertyKey, descriptor: PropertyDescriptor) =>
    wrapLocked(target, propertyKey, descriptor, {
      decorator: where,
      keys: (self, args, method) => (typeof key === 'string' ? key : checkKeys(where, method, key.apply(self, args as A))),
      ttl: ttlMs,
      wait: waitMs,
      options: checked,
      definition: { key, ttl: ttlMs, wait: waitMs, options: checked } satisfies WithLockDefinition,
    });
}

/** How a wrapped method builds its keys and what it does on timeout. @internal */
export interface LockedMethodSpec {
  /** `'@WithLock()'` or `'@RouteLock()'`, for messages. */
  readonly decorator: string;
  keys(self: unknown, args: unknown[], method: string): string | string[];
  readonly ttl?: number;
  readonly wait?: number;
  readonly options: WithLockOptions;
  /** Stored on the wrapper under WITH_LOCK_METADATA. */
  readonly definition: unknown;
}

/**
 * Replaces `descriptor.value` with a wrapper that runs the method holding the lock; shared by
 * `@WithLock` and `@RouteLock`. @internal
 */
export function wrapLocked(
  target: object,
  propertyKey: string | symbol,
  descriptor: PropertyDescriptor | undefined,
  spec: LockedMethodSpec,
): PropertyDescriptor {
  const method = memberName(target, propertyKey);
  // Legacy decorators on a field get no descriptor; on an accessor, one with get/set and no value.
  if (descriptor === undefined || descriptor === null) {
    throw new LockArgumentError(messages.decoratorNotMethod(spec.decorator, method, 'a field, or was decorated without a property descriptor'));
  }
  if (descriptor.get !== undefined || descriptor.set !== undefined) {
    throw new LockArgumentError(messages.decoratorNotMethod(spec.decorator, method, 'a getter or setter'));
  }
  const original = descriptor.value as (...args: unknown[]) => unknown;
  if (typeof original !== 'function') {
    throw new LockArgumentError(messages.decoratorNotMethod(spec.decorator, method, `not a function (${typeof original})`));
  }
  const { options } = spec;
  const usingOptions = { ttl: spec.ttl, wait: spec.wait, autoExtend: options.autoExtend, maxHold: options.maxHold, onLockLost: options.onLockLost };
  const onTimeout = options.onTimeout ?? 'throw';
  const requeueDelay = options.requeueDelay ?? 1000;

  async function run(fn: (...args: unknown[]) => unknown, self: unknown, args: unknown[]): Promise<unknown> {
    const client = resolveLockClient(self, method);
    const keys = spec.keys(self, args, method);
    const handle =
      onTimeout === 'throw'
        ? undefined
        : async (error: LockTimeoutError) => {
            if (typeof onTimeout === 'function') return onTimeout(error, ...args);
            const job = args[0] as JobLike | undefined;
            if (typeof job?.moveToDelayed !== 'function') throw new LockArgumentError(messages.requeueNeedsJob(method));
            await job.moveToDelayed(Date.now() + requeueDelay, args[1] as string | undefined);
            client.emit('requeued', { keys: error.keys, delay: requeueDelay, jobId: job.id });
            throw new RequeuedSignal();
          };
    return client.using(keys, usingOptions, () => Reflect.apply(fn, self, args), handle);
  }

  // A Proxy keeps the method's name and length; the lock is taken in the apply trap.
  const wrapped = new Proxy(original, {
    apply: (fn, self: unknown, args: unknown[]) => run(fn, self, args),
  });
  // Metadata of decorators applied before this one (route, @Cron, @OnWorkerEvent, SetMetadata)
  // lives on the function object: carry it over to the wrapper.
  for (const metadataKey of Reflect.getOwnMetadataKeys(original)) {
    Reflect.defineMetadata(metadataKey, Reflect.getOwnMetadata(metadataKey, original), wrapped);
  }
  Reflect.defineMetadata(WITH_LOCK_METADATA, spec.definition, wrapped);
  descriptor.value = wrapped;
  return descriptor;
}

/** `Class.member` for messages; a static member's target is the class itself, an instance member's its prototype. */
function memberName(target: object, propertyKey: string | symbol): string {
  const owner = typeof target === 'function' ? target : (target as { constructor?: { name?: string } }).constructor;
  return `${owner?.name || 'anonymous'}.${String(propertyKey)}`;
}

/**
 * Validates what a key function returned, naming the decorator and the method; a Promise gets its own
 * message (key functions must be synchronous: the key is needed before the lock, and the lock before the method).
 * @internal
 */
export function checkKeys(decorator: string, method: string, result: unknown): string | string[] {
  if (isThenable(result)) {
    if (result instanceof Promise) result.catch(() => undefined); // never awaited: keep its rejection from crashing the process
    throw new LockArgumentError(messages.keyFnPromise(decorator, method));
  }
  try {
    normalizeKeys(result);
  } catch (error) {
    throw new LockArgumentError(messages.keyFnReturned(decorator, method, result, (error as Error).message));
  }
  return result as string | string[];
}

/** The fourth argument of `@WithLock`, checked at declaration; returns a frozen copy (later changes to the caller's object cannot skip the checks). */
function checkOptions(options: unknown): WithLockOptions {
  const where = '@WithLock()';
  const given = validateOptions<WithLockOptions>(where, options, WITH_LOCK_OPTIONS);
  const { onTimeout, requeueDelay, onLockLost, autoExtend, maxHold } = given;
  if (onTimeout !== undefined && onTimeout !== 'throw' && onTimeout !== 'requeue' && typeof onTimeout !== 'function') {
    throw new LockArgumentError(messages.argumentInvalid(where, 'onTimeout', "must be 'throw', 'requeue' or a function", onTimeout));
  }
  const checked: WithLockOptions = {};
  if (onTimeout !== undefined) checked.onTimeout = onTimeout;
  if (requeueDelay !== undefined) checked.requeueDelay = validateWait(where, requeueDelay, 'requeueDelay');
  if (onLockLost !== undefined) checked.onLockLost = validateOnLockLost(where, onLockLost);
  if (autoExtend !== undefined) checked.autoExtend = validateBoolean(where, 'autoExtend', autoExtend);
  if (maxHold !== undefined) checked.maxHold = validateTtl(where, maxHold, 'maxHold');
  return Object.freeze(checked);
}
