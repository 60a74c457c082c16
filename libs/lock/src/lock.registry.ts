import { LockNotInitializedError } from './errors/lock.errors.js';
import type { LockClient } from './core/lock-client.js';
import { messages } from './lock.messages.js';

/**
 * How a `@WithLock` method finds its engine at call time. Each LockService registers an
 * `owns(instance)` test; the instance is looked up once, then cached. Several apps in one
 * process each find their own. @internal
 */
export interface LockApp {
  readonly client: LockClient;
  /** Whether this app's container created `instance`. */
  owns(instance: object): boolean;
}

const apps = new Set<LockApp>();
const cache = new WeakMap<object, LockApp>();

export function registerLockApp(app: LockApp): void {
  apps.add(app);
}

export function unregisterLockApp(app: LockApp): void {
  apps.delete(app);
}

export function resolveLockClient(instance: unknown, method: string): LockClient {
  if (typeof instance === 'object' && instance !== null) {
    const cached = cache.get(instance);
    if (cached && apps.has(cached)) return cached.client;
    for (const app of apps) {
      if (app.owns(instance)) {
        cache.set(instance, app);
        return app.client;
      }
    }
  }
  // Not a singleton of any app (request-scoped, or created by hand): only unambiguous with one app.
  if (apps.size === 1) return apps.values().next().value!.client;
  throw new LockNotInitializedError(apps.size === 0 ? messages.notInitialized(method) : messages.ambiguousApp(method));
}
