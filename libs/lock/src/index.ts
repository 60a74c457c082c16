/**
 * nestjs-redis-lock: distributed locks on Redis for NestJS.
 * @packageDocumentation
 */
export { LockModule } from './lock.module.js';
export { LockService } from './lock.service.js';
export {
  LOCK_MODULE_OPTIONS,
  type LockModuleAsyncOptions,
  type LockModuleExtras,
  type LockModuleRootOptions,
  type LockOptionsFactory,
} from './lock.module-definition.js';
export { WithLock } from './decorators/with-lock.decorator.js';
export {
  RouteLock,
  type RouteLockKeyFn,
  type RouteLockDefinition,
  type RouteLockOptions,
  type RouteLockMethodDecorator,
} from './decorators/route-lock.decorator.js';
export { LockInterceptor, type LockedProblem } from './interceptors/lock.interceptor.js';
export { currentLock } from './core/context.js';
export { lockKey, withTenant, currentTenant, MAX_TENANT_LENGTH, type TenantResolver, type TenancyOptions } from './core/tenancy.js';
export * from './idempotency/index.js';
export { LockClient, type LockClientOptions, type LockEvents, type LockRef, type LockStats } from './core/lock-client.js';
export { LOCK_CHANNELS, type LockEventName } from './core/channels.js';
export { RedisLockStore, type RedisLockStoreOptions } from './core/store/redis/redis-store.js';
export { MemoryLockStore } from './core/store/memory/memory-store.js';
export type {
  LockStore,
  AcquireRequest,
  AcquireResult,
  StoreEvent,
  StoreListener,
  InspectResult,
  ReleaseOutcome,
  StoreHealth,
} from './core/store/store.js';
export * from './errors/index.js';
export * from './interfaces/index.js';
