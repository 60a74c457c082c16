import { applyDecorators, SetMetadata, UseInterceptors, type ExecutionContext } from '@nestjs/common';
import { LockArgumentError, LockNotInitializedError } from '../core/errors.js';
import { ROUTE_LOCK_METADATA } from '../lock.constants.js';
import { messages } from '../core/messages.js';
import { LockInterceptor } from '../interceptors/lock.interceptor.js';
import { routeLockScope } from '../interceptors/route-lock.scope.js';
import { validateFunction, validateKey, validateOptions, validateTtl, validateWait } from '../core/validate.js';
import { checkKeys, wrapLocked } from '../utils/wrap-method.js';

/** Builds lock keys from the HTTP request (params, body, headers). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the request object is whatever the platform (Express, Fastify) passes
export type RouteLockKeyFn = (request: any, context: ExecutionContext) => string | string[];

/** The options-object form of `@RouteLock`: `@RouteLock({ key, ttl, wait, tenant })`. */
export interface RouteLockOptions {
  /** The lock key, or a function of the request (and the ExecutionContext) returning one key or several. */
  key: string | RouteLockKeyFn;
  /** Lock time to live, ms: 10 to 2^31-1 (default: the module's). */
  ttl?: number;
  /** How long to wait for a busy lock, ms: 0 to 2^31-1 (default: the module's); then 423. */
  wait?: number;
  /**
   * The tenant of the request (e.g. `(req) => req.user.tenantId`): the key is namespaced under it
   * (docs/tenancy.md). `undefined`: the module's tenant resolver decides; `null`: no tenant.
   */
  tenant?: (...args: Parameters<RouteLockKeyFn>) => string | null | undefined;
}

/**
 * What `@RouteLock(...)` returns: a decorator for route handlers that return a Promise.
 * @typeParam M the decorated handler's type; it must return a Promise.
 */
export type RouteLockMethodDecorator = <M extends (...args: any[]) => Promise<unknown>>(
  target: object,
  propertyKey: string | symbol,
  descriptor: TypedPropertyDescriptor<M>,
) => void;

const ROUTE_LOCK_OBJECT_OPTIONS = ['key', 'ttl', 'wait', 'tenant'] as const;

/** What `@RouteLock` stores on a handler (metadata read by {@link LockInterceptor}), checked at declaration. */
export interface RouteLockDefinition {
  /** The lock key, or the function that builds it from the request. */
  readonly key: string | RouteLockKeyFn;
  /** Lock time to live, ms; unset: the module's. */
  readonly ttl?: number;
  /** How long to wait for a busy lock, ms; unset: the module's. */
  readonly wait?: number;
  /** The tenant function of the request; unset: the module's resolver. */
  readonly tenant?: RouteLockOptions['tenant'];
}

/**
 * Locks an HTTP route on a key built from the request (params, body, headers such as a tenant id).
 * The lock is taken right around the handler, after guards, pipes and validation (so a request
 * rejected with 400 touches nothing in Redis); when it cannot be had within `wait`, the client gets
 * `423 Locked` with `Retry-After`. It applies {@link LockInterceptor}, which supplies the request.
 *
 * Use `@WithLock` instead when the key comes from the handler's arguments. With both on one handler
 * and the same key, the lock is taken once (re-entrancy).
 *
 * This is the options-object form, `@RouteLock({ key, ttl, wait })`; the positional form
 * `@RouteLock(key, ttl?, wait?)` does the same. Only handlers declared to return a Promise can be
 * decorated (a compile error otherwise): the wrapper always returns one, so a handler typed as
 * synchronous would lie to a direct caller (a unit test).
 *
 * @param options `key` (a string, or a {@link RouteLockKeyFn} of the request), `ttl` and `wait`; see {@link RouteLockOptions}.
 * @returns a method decorator for route handlers.
 * @example
 * ```ts
 * @Post(':id/adjust')
 * @RouteLock({ key: (req) => lockKey('account', req.params.id), tenant: (req) => req.user.tenantId, ttl: 5_000, wait: 500 })
 * async adjust(@Param('id') id: string, @Body() dto: AdjustDto): Promise<AccountView> { ... }
 * ```
 * @throws LockArgumentError at declaration for an invalid key, ttl (10..2^31-1 ms) or wait (0..2^31-1 ms), an unknown
 *   name in the options object, a second argument after it, or a target that is not a method.
 */
export function RouteLock(options: RouteLockOptions): RouteLockMethodDecorator;
/**
 * Locks an HTTP route on a key built from the request: the positional form, `@RouteLock(key, ttl?, wait?)`,
 * of the options-object form above (same behaviour, same checks).
 *
 * @param key the lock key, or a function of the request (and the ExecutionContext) returning one key or several.
 * @param ttl lock time to live, ms: 10 to 2^31-1 (default: the module's).
 * @param wait how long to wait for a busy lock, ms: 0 to 2^31-1 (default: the module's); then 423.
 * @returns a method decorator for route handlers.
 * @example
 * ```ts
 * @Post(':id/close')
 * @RouteLock((req) => `account:${req.params.id}`, 5_000, 0)
 * async close(@Param('id') id: string): Promise<AccountView> { ... }
 * ```
 * @throws LockArgumentError at declaration for an invalid key, ttl (10..2^31-1 ms) or wait (0..2^31-1 ms), a fourth
 *   argument (options belong to `@WithLock`), or a target that is not a method.
 */
export function RouteLock(key: string | RouteLockKeyFn, ttl?: number, wait?: number): RouteLockMethodDecorator;
export function RouteLock(...args: [string | RouteLockKeyFn | RouteLockOptions, number?, number?, ...unknown[]]): RouteLockMethodDecorator {
  const where = '@RouteLock()';
  const [keyOrOptions] = args;
  let [, ttl, wait] = args;
  let key: unknown = keyOrOptions;
  let tenant: unknown;
  if (typeof keyOrOptions === 'object' && keyOrOptions !== null && !Array.isArray(keyOrOptions)) {
    if (args.length > 1) {
      throw new LockArgumentError(
        messages.argumentInvalid(where, 'a second argument', 'is not taken after an options object (put ttl and wait in it)', args[1]),
      );
    }
    ({ key, ttl, wait, tenant } = validateOptions<RouteLockOptions>(where, keyOrOptions, ROUTE_LOCK_OBJECT_OPTIONS));
    if (tenant !== undefined) validateFunction(where, 'tenant', tenant);
  }
  if (typeof key === 'string') validateKey(key);
  else if (typeof key !== 'function') throw new LockArgumentError(messages.decoratorKeyInvalid(where, key));
  // Options belong to @WithLock; a fourth argument here (plain JS, or copied from @WithLock) would be ignored silently.
  if (args.length > 3) throw new LockArgumentError(messages.routeLockExtraArgument(args[3]));
  const definition: RouteLockDefinition = {
    key: key as string | RouteLockKeyFn,
    ttl: ttl === undefined ? undefined : validateTtl(where, ttl),
    wait: wait === undefined ? undefined : validateWait(where, wait),
    ...(tenant === undefined ? {} : { tenant: tenant as RouteLockOptions['tenant'] }),
  };
  const lock = (target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor) =>
    void wrapLocked(target, propertyKey, descriptor, {
      decorator: where,
      keys: (_self, _args, method) => {
        const scope = routeLockScope.getStore();
        if (!scope) throw new LockNotInitializedError(messages.routeLockOutsideHttp(method));
        return checkKeys(where, method, scope.buildKey(definition));
      },
      // Only with a tenant function: otherwise the module's resolver decides, as for any call.
      tenant: definition.tenant ? () => routeLockScope.getStore()?.buildTenant(definition) : undefined,
      ttl: definition.ttl,
      wait: definition.wait,
      options: {},
      definition,
    });
  return applyDecorators(
    lock as MethodDecorator,
    SetMetadata(ROUTE_LOCK_METADATA, definition),
    UseInterceptors(LockInterceptor),
  ) as RouteLockMethodDecorator;
}
