import { applyDecorators, SetMetadata, UseInterceptors, type ExecutionContext } from '@nestjs/common';
import { LockArgumentError, LockNotInitializedError } from '../errors/lock.errors.js';
import { ROUTE_LOCK_METADATA } from '../lock.constants.js';
import { messages } from '../lock.messages.js';
import { LockInterceptor } from '../interceptors/lock.interceptor.js';
import { routeLockScope } from '../interceptors/route-lock.scope.js';
import { validateKey, validateTtl, validateWait } from '../utils/validate.js';
import { checkKeys, wrapLocked } from './with-lock.decorator.js';

/** Builds lock keys from the HTTP request (params, body, headers). */
export type RouteLockKeyFn = (request: any, context: ExecutionContext) => string | string[];

/** What `@RouteLock` stores on a handler. */
export interface RouteLockDefinition {
  readonly key: string | RouteLockKeyFn;
  readonly ttl?: number;
  readonly wait?: number;
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
 * @example
 * ```ts
 * @Post(':id/adjust')
 * @RouteLock((req) => `tenant:${req.headers['x-tenant']}:account:${req.params.id}`, 5_000, 500)
 * adjust(@Param('id') id: string, @Body() dto: AdjustDto) { ... }
 * ```
 * @throws LockArgumentError at declaration for an invalid key, ttl (10..2^31-1 ms) or wait (0..2^31-1 ms), a fourth
 *   argument (options belong to `@WithLock`), or a target that is not a method.
 */
export function RouteLock(key: string | RouteLockKeyFn, ttl?: number, wait?: number): MethodDecorator {
  const where = '@RouteLock()';
  if (typeof key === 'string') validateKey(key);
  else if (typeof key !== 'function') throw new LockArgumentError(messages.decoratorKeyInvalid(where, key));
  // Options belong to @WithLock; a fourth argument here (plain JS, or copied from @WithLock) would be ignored silently.
  if (arguments.length > 3) throw new LockArgumentError(messages.routeLockExtraArgument(arguments[3]));
  const definition: RouteLockDefinition = {
    key,
    ttl: ttl === undefined ? undefined : validateTtl(where, ttl),
    wait: wait === undefined ? undefined : validateWait(where, wait),
  };
  const lock: MethodDecorator = (target, propertyKey, descriptor: PropertyDescriptor) =>
    wrapLocked(target, propertyKey, descriptor, {
      decorator: where,
      keys: (_self, _args, method) => {
        const scope = routeLockScope.getStore();
        if (!scope) throw new LockNotInitializedError(messages.routeLockOutsideHttp(method));
        return checkKeys(where, method, scope.buildKey(definition));
      },
      ttl: definition.ttl,
      wait: definition.wait,
      options: {},
      definition,
    });
  return applyDecorators(lock, SetMetadata(ROUTE_LOCK_METADATA, definition), UseInterceptors(LockInterceptor));
}
