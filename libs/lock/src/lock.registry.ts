import { LockNotInitializedError } from './core/errors.js';
import type { LockClient } from './core/lock-client.js';
import type { UsingOptions } from './core/types.js';
import type { Lock } from './core/types.js';
import { messages } from './core/messages.js';

/**
 * What a decorated method calls: the public `using()` of whatever the app's container resolves for
 * `LockService` (the real service, or a mock given with `overrideProvider(LockService)`). @internal
 */
export interface LockServiceLike {
  using<T>(key: string | string[], options: UsingOptions, fn: (lock: Lock) => Promise<T> | T): Promise<T>;
}

/**
 * One Nest application, as `LockRegistrar` registers it: the LockService its container resolved, and a
 * test of whether its container created an instance. @internal
 */
export interface LockApp {
  readonly service: LockServiceLike;
  /** Whether this app's container created `instance` (a singleton provider or controller). */
  owns(instance: object): boolean;
}

/** What only the real LockService has, kept off its public surface. @internal */
export interface LockServiceInternals {
  readonly client: LockClient;
}

/**
 * The engine of each real LockService, for the wrapper's `'requeued'` event; a mock has no entry (a
 * WeakMap rather than a property, so the d.ts and `Object.keys(service)` show nothing). @internal
 */
export const lockServiceInternals = new WeakMap<object, LockServiceInternals>();

const apps = new Set<LockApp>();
const cache = new WeakMap<object, LockApp>();

/** @internal */
export function registerLockApp(app: LockApp): void {
  apps.add(app);
}

/** @internal */
export function unregisterLockApp(app: LockApp): void {
  apps.delete(app);
}

/** Forgets every app whose service is `service` (its init failed: Nest will run no shutdown hook). @internal */
export function unregisterLockService(service: object): void {
  for (const app of apps) if (app.service === service) apps.delete(app);
}

/**
 * The LockService of the app that created `instance`, found at call time; the instance is looked up
 * once, then cached. An instance no app created (request-scoped, or `new`ed by hand) is only
 * unambiguous with one app in the process. @internal
 * @throws LockNotInitializedError with no app, or several and none owning the instance.
 */
export function resolveLockService(instance: unknown, method: string): LockServiceLike {
  if (typeof instance === 'object' && instance !== null) {
    const cached = cache.get(instance);
    if (cached && apps.has(cached)) return cached.service;
    for (const app of apps) {
      if (app.owns(instance)) {
        cache.set(instance, app);
        return app.service;
      }
    }
  }
  if (apps.size === 1) return apps.values().next().value!.service;
  throw new LockNotInitializedError(apps.size === 0 ? messages.notInitialized(method) : messages.ambiguousApp(method));
}
