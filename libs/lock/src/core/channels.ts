import { channel, type Channel } from 'node:diagnostics_channel';

/**
 * The `node:diagnostics_channel` channel of each lock event: `nestjs-redis-lock:<event>`. Every event
 * a {@link LockClient} (or `LockService`) emits is also published there, with the same payload, while
 * the channel has subscribers (nothing is built or published otherwise). Channels are process-wide: a
 * subscriber sees the events of every lock client in the process. Tracers (dd-trace, OpenTelemetry)
 * can hook in without the library knowing them.
 *
 * @example
 * ```ts
 * import { subscribe } from 'node:diagnostics_channel';
 * import { LOCK_CHANNELS, type LockEvents } from 'nestjs-redis-lock';
 *
 * subscribe(LOCK_CHANNELS.acquired, (message) => {
 *   const { label, waited } = message as LockEvents['acquired'][0];
 *   histogram.observe({ label: label ?? 'none' }, waited / 1000);
 * });
 * ```
 */
export const LOCK_CHANNELS = Object.freeze({
  /** `acquiring`: an acquisition starts. */
  acquiring: 'nestjs-redis-lock:acquiring',
  /** `acquired`: a lock was taken. */
  acquired: 'nestjs-redis-lock:acquired',
  /** `released`: a release was answered. */
  released: 'nestjs-redis-lock:released',
  /** `extended`: an extension succeeded (heartbeat or `extend()`). */
  extended: 'nestjs-redis-lock:extended',
  /** `lost`: a held lock was found lost. */
  lost: 'nestjs-redis-lock:lost',
  /** `timeout`: an acquisition gave up after its wait. */
  timeout: 'nestjs-redis-lock:timeout',
  /** `failed`: an acquisition ended with an error other than a timeout. */
  failed: 'nestjs-redis-lock:failed',
  /** `requeued`: a `@WithLock` BullMQ job was moved back to delayed. */
  requeued: 'nestjs-redis-lock:requeued',
  /** `idempotent`: an idempotent call ended. */
  idempotent: 'nestjs-redis-lock:idempotent',
} as const);

/** The name of a lock event (a key of `LockEvents`). */
export type LockEventName = keyof typeof LOCK_CHANNELS;

/**
 * The channel objects, created once and held here (Node keeps channels without subscribers only weakly).
 * @internal
 */
export const lockChannels: Readonly<Record<LockEventName, Channel>> = Object.freeze(
  Object.fromEntries(Object.entries(LOCK_CHANNELS).map(([event, name]) => [event, channel(name)])) as Record<LockEventName, Channel>,
);
