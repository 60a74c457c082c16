/** Metadata key set by {@link RouteLock} on a route handler or controller. @internal */
export const ROUTE_LOCK_METADATA = 'nestjs_redis_lock:route_lock';
/** Metadata key holding the @WithLock definition on the wrapped method. @internal */
export const WITH_LOCK_METADATA = 'nestjs_redis_lock:with_lock';

export const DEFAULT_KEY_PREFIX = 'lock:';
export const DEFAULT_TTL = 30_000;
export const DEFAULT_WAIT = 5_000;
export const DEFAULT_CONNECT_TIMEOUT = 2_000;
/** Default `slowWaitMs`: acquisitions that waited longer are logged at warn. */
export const DEFAULT_SLOW_WAIT = 1_000;
