import { Inject, Injectable, Module, type DynamicModule, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { LockNotInitializedError } from '../../core/errors.js';
import { LOCK_CHANNELS, type LockEventName } from '../../core/channels.js';
import { messages } from '../../core/messages.js';
import { findLockService, subscribeAll, type LockEventSource } from '../lock-source.js';

/** The EventEmitter2 event name of each lock event: `lock.<event>`, e.g. `lock.acquired`. */
export const LOCK_EVENT_NAMES: Readonly<Record<LockEventName, `lock.${LockEventName}`>> = Object.freeze(
  Object.fromEntries(Object.keys(LOCK_CHANNELS).map((event) => [event, `lock.${event}`])) as Record<LockEventName, `lock.${LockEventName}`>,
);

/** Re-emits the app's lock events through its EventEmitter2 from init to shutdown. @internal */
@Injectable()
class LockEventRelay implements OnModuleInit, OnApplicationShutdown {
  #detach?: () => void;

  constructor(@Inject(ModuleRef) private readonly moduleRef: ModuleRef) {}

  onModuleInit(): void {
    if (this.#detach) return;
    const service = findLockService(this.moduleRef, 'LockEventEmitterModule');
    let emitter: EventEmitter2;
    try {
      emitter = this.moduleRef.get(EventEmitter2, { strict: false });
    } catch {
      throw new LockNotInitializedError(
        messages.integrationNeedsProvider(
          'LockEventEmitterModule',
          'EventEmitter2',
          'EventEmitterModule.forRoot() (from @nestjs/event-emitter)',
        ),
      );
    }
    this.#detach = relay(service, emitter);
  }

  onApplicationShutdown(): void {
    this.#detach?.();
    this.#detach = undefined;
  }
}

/** Subscribes to every lock event of `source` and emits it on `emitter` as `lock.<event>`, with the same payload. */
function relay(source: LockEventSource, emitter: EventEmitter2): () => void {
  const listeners: Record<string, (payload: unknown) => void> = {};
  for (const [event, name] of Object.entries(LOCK_EVENT_NAMES)) listeners[event] = (payload) => void emitter.emit(name, payload);
  return subscribeAll(source, listeners as Parameters<typeof subscribeAll>[1]);
}

/**
 * Re-emits every lock event through the application's EventEmitter2 (`nestjs-redis-lock/event-emitter`,
 * needs `@nestjs/event-emitter` and `EventEmitterModule.forRoot()`), as `lock.<event>` with the event's
 * payload (see `LockEvents`): `lock.acquiring`, `lock.acquired`, `lock.released`, `lock.extended`,
 * `lock.lost`, `lock.timeout`, `lock.failed`, `lock.requeued`, `lock.idempotent`.
 *
 * @example
 * ```ts
 * @Module({ imports: [EventEmitterModule.forRoot(), LockModule.forRoot(), LockEventEmitterModule.forRoot()] })
 * export class AppModule {}
 *
 * @Injectable()
 * export class LockAlerts {
 *   @OnEvent('lock.lost')
 *   onLost({ label, error }: LockEvents['lost'][0]) { this.pager.warn(`${label}: ${error.message}`); }
 * }
 * ```
 */
@Module({})
export class LockEventEmitterModule {
  /** The relay of lock events to EventEmitter2, from app init to shutdown. */
  static forRoot(): DynamicModule {
    return { module: LockEventEmitterModule, providers: [LockEventRelay] };
  }
}
