import { LockArgumentError, LockTimeoutError } from '../core/errors.js';
import type { WithLockOptions } from '../interfaces/with-lock-options.interface.js';
import { WITH_LOCK_METADATA } from '../lock.constants.js';
import { messages } from '../core/messages.js';
import { resolveLockService } from '../lock.registry.js';
import { requeueJob } from '../integrations/bullmq/requeue.js';
import { isThenable, normalizeKeys } from '../core/validate.js';

/** How a wrapped method builds its keys and what it does on timeout. @internal */
export interface LockedMethodSpec {
  /** `'@WithLock()'` or `'@RouteLock()'`, for messages. */
  readonly decorator: string;
  keys(self: unknown, args: unknown[], method: string): string | string[];
  readonly ttl?: number;
  readonly wait?: number;
  /** The call's tenant, when the decorator takes it from elsewhere than `options.tenant` (`@RouteLock`: the request). */
  tenant?(self: unknown, args: unknown[], method: string): unknown;
  readonly options: WithLockOptions;
  /** Stored on the wrapper under WITH_LOCK_METADATA. */
  readonly definition: unknown;
}

/**
 * Replaces `descriptor.value` with a wrapper that runs the method holding the lock; shared by
 * `@WithLock` and `@RouteLock`. Wrap at decoration time, resolve at call time: the wrapper finds the
 * LockService of the instance's app (whatever that app's container resolved, a mock included) and
 * calls its public `using()`. @internal
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
    throw new LockArgumentError(
      messages.decoratorNotMethod(spec.decorator, method, 'a field, or was decorated without a property descriptor'),
    );
  }
  if (descriptor.get !== undefined || descriptor.set !== undefined) {
    throw new LockArgumentError(messages.decoratorNotMethod(spec.decorator, method, 'a getter or setter'));
  }
  const original = descriptor.value as (...args: unknown[]) => unknown;
  if (typeof original !== 'function') {
    throw new LockArgumentError(messages.decoratorNotMethod(spec.decorator, method, `not a function (${typeof original})`));
  }
  const { options } = spec;
  const usingOptions = {
    ttl: spec.ttl,
    wait: spec.wait,
    autoExtend: options.autoExtend,
    maxHold: options.maxHold,
    onLockLost: options.onLockLost,
    // Bounded, for metrics: the method, never the key.
    label: options.label ?? method,
  };
  const onTimeout = options.onTimeout ?? 'throw';
  const requeueDelay = options.requeueDelay ?? 1000;

  async function timedOut(service: object, error: LockTimeoutError, args: unknown[]): Promise<unknown> {
    if (typeof onTimeout === 'function') return onTimeout(error, ...args);
    return requeueJob(service, method, error, args, requeueDelay, usingOptions.label);
  }

  async function run(fn: (...args: unknown[]) => unknown, self: unknown, args: unknown[]): Promise<unknown> {
    const service = resolveLockService(self, method);
    const keys = spec.keys(self, args, method);
    // The call's tenant (from its arguments, or the request): undefined leaves it to the module's resolver.
    const tenant = spec.tenant ? spec.tenant(self, args, method) : options.tenant?.apply(self, args);
    // onTimeout handles a failed acquisition only: a LockTimeoutError thrown by the method itself
    // (it took another lock) reaches the caller unchanged.
    let started = false;
    try {
      const callOptions = tenant === undefined ? usingOptions : { ...usingOptions, tenant: tenant as string | null };
      return await service.using(keys, callOptions, () => {
        started = true;
        return Reflect.apply(fn, self, args);
      });
    } catch (error) {
      if (onTimeout !== 'throw' && !started && error instanceof LockTimeoutError) return timedOut(service, error, args);
      throw error;
    }
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
