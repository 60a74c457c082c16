import { AsyncLocalStorage } from 'node:async_hooks';
import type { RouteLockDefinition } from '../decorators/route-lock.decorator.js';

/** Set by LockInterceptor around a route handler: how to build the keys of this request. @internal */
export interface RouteLockScope {
  buildKey(definition: RouteLockDefinition): string | string[];
  /** The tenant of this request for a definition with a `tenant` function. */
  buildTenant(definition: RouteLockDefinition): unknown;
}

/** @internal */
export const routeLockScope = new AsyncLocalStorage<RouteLockScope>();
