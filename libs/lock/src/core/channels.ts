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
  acquiring: 'nestjs-redis-lock:acquiring',
  acquired: 'nestjs-redis-lock:acquired',
  released: 'nestjs-redis-lock:released',
  extended: 'nestjs-redis-lock:extended',
  lost: 'nestjs-redis-lock:lost',
  timeout: 'nestjs-redis-lock:timeout',
  failed: 'nestjs-redis-lock:failed',
  requeued: 'nestjs-redis-lock:requeued',
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
