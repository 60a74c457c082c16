import { applyDecorators, SetMetadata, UseInterceptors, type ExecutionContext } from '@nestjs/common';
import { LockArgumentError } from '../errors/lock.errors.js';
import { ROUTE_LOCK_METADATA } from '../lock.constants.js';
import { messages } from '../lock.messages.js';
import { LockInterceptor } from '../interceptors/lock.interceptor.js';
import { validateKey, validateTtl, validateWait } from '../utils/validate.js';

/** Builds lock keys from the HTTP request (params, body, headers). */
export type RouteLockKeyFn = (request: any, context: ExecutionContext) => string | string[];

/** What `@RouteLock` stores on a handler. */
export interface RouteLockDefinition {
  readonly key: string | RouteLockKeyFn;
  readonly ttl?: number;
  readonly wait?: number;
}

/**
 * Locks an HTTP route on a key built from the request, through {@link LockInterceptor}: the handler
 * runs holding the lock; when the lock cannot be had within `wait` the client gets
 * `423 Locked` with `Retry-After`. Use `@WithLock` instead when the key comes from the
 * handler's arguments; with both on one handler and the same key the lock is taken once (re-entrancy).
 *
 * @example
 * ```ts
 * @Post(':id/adjust')
 * @RouteLock((req) => `account:${req.params.id}`, 5_000, 500)
 * adjust(@Param('id') id: string, @Body() dto: AdjustDto) { ... }
 * ```
 */
export function RouteLock(key: string | RouteLockKeyFn, ttl?: number, wait?: number): MethodDecorator & ClassDecorator {
  if (typeof key === 'string') validateKey(key);
  else if (typeof key !== 'function') throw new LockArgumentError(messages.keyFnNotFunctionOrString(key));
  const definition: RouteLockDefinition = {
    key,
    ttl: ttl === undefined ? undefined : validateTtl('@RouteLock()', ttl),
    wait: wait === undefined ? undefined : validateWait('@RouteLock()', wait),
  };
  return applyDecorators(SetMetadata(ROUTE_LOCK_METADATA, definition), UseInterceptors(LockInterceptor));
}
