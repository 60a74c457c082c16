import type { OnLockLost } from '../core/types.js';

/** Builds the lock key(s) of a call from the method's arguments; `this` is the instance. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types (a narrower unknown[] would not accept them)
export type LockKeyFn<A extends unknown[] = any[]> = (...args: A) => string | string[];

/** What `@WithLock` does when the lock cannot be had within `wait`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types (a narrower unknown[] would not accept them)
export type OnLockTimeout<A extends unknown[] = any[]> =
  'throw' | 'requeue' | ((error: import('../core/errors.js').LockTimeoutError, ...args: A) => unknown);

/**
 * Fourth argument of `@WithLock`. Checked when the decorator is applied: any other name is refused
 * (with the closest known name suggested), as is a value of the wrong type or out of bounds.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types (a narrower unknown[] would not accept them)
export interface WithLockOptions<A extends unknown[] = any[]> {
  /**
   * `'throw'` (default): reject with LockTimeoutError. `'requeue'`: for a BullMQ `process(job, token)`,
   * move the job back to delayed for `requeueDelay` ms without counting a failed attempt.
   * A function: its result is returned instead.
   */
  onTimeout?: OnLockTimeout<A>;
  /** Delay before a requeued job runs again, ms: 0 to 2^31-1 (rounded up). Default 1000. */
  requeueDelay?: number;
  /** Overrides the module's `onLockLost`: `'continue'` or `'throw'`. */
  onLockLost?: OnLockLost;
  /** Overrides the module's `autoExtend`: `true` or `false` (nothing else). */
  autoExtend?: boolean;
  /** Longest time the heartbeat may keep the lock, ms: 10 to 2^31-1 (rounded up). */
  maxHold?: number;
  /**
   * The lock's name in events, diagnostics channels, metrics and log lines: 1 to 200 characters.
   * Default `Class.method` (the decorated method). Keep it bounded: never build it from the arguments.
   */
  label?: string;
  /**
   * The tenant of a call, from the method's arguments (`this` is the instance), e.g.
   * `(job: Job<Payment>) => job.data.tenantId`: its key is namespaced under it (docs/tenancy.md).
   * `undefined`: the module's tenant resolver decides; `null`: no tenant. Must be synchronous.
   */
  tenant?: (...args: A) => string | null | undefined;
}

/**
 * The options-object form of `@WithLock`: `@WithLock({ key, ttl, wait, onTimeout, ... })`, the same
 * as `@WithLock(key, ttl, wait, { onTimeout, ... })`. Checked when the decorator is applied, like the
 * positional form: any other name is refused.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types (a narrower unknown[] would not accept them)
export interface WithLockDecoratorOptions<A extends unknown[] = any[]> extends WithLockOptions<A> {
  /** The lock key, or a function of the method's arguments (`this` is the instance) returning one key or several. */
  key: string | LockKeyFn<A>;
  /** Lock time to live, ms: 10 to 2^31-1 (default: the module's). A heartbeat extends it while the method runs. */
  ttl?: number;
  /** How long to wait for a busy lock, ms: 0 to 2^31-1 (default: the module's); 0 = one attempt. */
  wait?: number;
}

/**
 * Whether a key function (or `onTimeout` function) taking `A` can be called with the arguments of
 * method `M`: `unknown` (no constraint) when it can, an object with an explanatory property otherwise,
 * so the mismatch is a compile error on the decorated method.
 * @typeParam A the parameters of the key function (or `onTimeout` function).
 * @typeParam M the decorated method's type.
 */
export type LockKeyFnFits<A extends unknown[], M> = M extends (...args: infer P) => Promise<unknown>
  ? [(...args: A) => unknown] extends [(...args: P) => unknown]
    ? unknown
    : {
        /**
         * The compile error's text: no method descriptor has this property. Not part of the API.
         * (`@hidden`, not `@internal`: a stripInternal build must keep it in the declarations.)
         * @hidden
         */
        readonly 'the key function (or onTimeout) of this lock decorator takes parameters the method does not have': (
          ...args: A
        ) => unknown;
      }
  : {
      /**
       * The compile error's text: no method descriptor has this property. Not part of the API.
       * @hidden
       */
      readonly 'a lock decorator can only decorate a method that returns a Promise': M;
    };

/**
 * What `@WithLock(...)` returns: a decorator for methods that return a Promise and whose arguments the
 * key function (and an `onTimeout` function) accepts.
 * @typeParam A the parameters of the key function (and of an `onTimeout` function).
 * @typeParam M the decorated method's type: it must return a Promise and take arguments that `A` accepts.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- an any[] default lets a key function name its own parameter types (a narrower unknown[] would not accept them)
export type WithLockMethodDecorator<A extends unknown[] = any[]> = <M extends (...args: any[]) => Promise<unknown>>(
  target: object,
  propertyKey: string | symbol,
  descriptor: TypedPropertyDescriptor<M> & LockKeyFnFits<A, M>,
) => void;
