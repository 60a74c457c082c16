import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit, type Provider } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { LockNotInitializedError } from '../core/errors.js';
import type { LockEvents, LockStats } from '../core/lock-client.js';
import { messages } from '../core/messages.js';
import { LockService } from '../lock.service.js';

/** The label metrics and spans carry for an event without one (never the raw key: cardinality stays bounded). */
export const UNLABELLED = 'unlabelled';

/** An event's label, or {@link UNLABELLED}. @internal */
export const labelOf = (label: string | undefined): string => (label === undefined || label === '' ? UNLABELLED : label);

/**
 * What an integration needs of a LockService: its events, and (when it has them: a mock may not) its stats.
 * @internal
 */
export interface LockEventSource {
  on<E extends keyof LockEvents>(event: E, listener: (...args: LockEvents[E]) => void): () => void;
  stats?(): LockStats;
}

/**
 * The application's LockService, wherever LockModule was imported (global or not): the integrations'
 * modules are imported next to it, not inside it.
 * @throws LockNotInitializedError naming `integration` when the application has no LockModule.
 * @internal
 */
export function findLockService(moduleRef: ModuleRef, integration: string): LockEventSource {
  try {
    return moduleRef.get(LockService, { strict: false });
  } catch {
    throw new LockNotInitializedError(messages.integrationNeedsLockModule(integration));
  }
}

/**
 * Subscribes `listeners` to `source`'s events; returns the function that removes them all. @internal
 */
export function subscribeAll(
  source: LockEventSource,
  listeners: { [E in keyof LockEvents]?: (...args: LockEvents[E]) => void },
): () => void {
  const offs = (Object.keys(listeners) as (keyof LockEvents)[]).map((event) => source.on(event, listeners[event] as never));
  return () => {
    for (const off of offs.splice(0)) off();
  };
}

/** What an integration module attaches to the app's LockService: its name (for messages) and how. @internal */
export interface LockIntegration {
  readonly name: string;
  /** Subscribes to `service`; returns the function that unsubscribes. */
  attach(service: LockEventSource): () => void;
}

/** Injection token of a module's {@link LockIntegration}. @internal */
const LOCK_INTEGRATION = Symbol('LOCK_INTEGRATION');

/** Attaches its module's integration to the app's LockService at init, and detaches it at shutdown. @internal */
@Injectable()
class LockIntegrationSubscriber implements OnModuleInit, OnApplicationShutdown {
  #detach?: () => void;

  constructor(
    @Inject(LOCK_INTEGRATION) private readonly integration: LockIntegration,
    @Inject(ModuleRef) private readonly moduleRef: ModuleRef,
  ) {}

  onModuleInit(): void {
    this.#detach ??= this.integration.attach(findLockService(this.moduleRef, this.integration.name));
  }

  onApplicationShutdown(): void {
    this.#detach?.();
    this.#detach = undefined;
  }
}

/** The providers of an integration module: `integration`, attached at init and detached at shutdown. @internal */
export function integrationProviders(integration: LockIntegration): Provider[] {
  return [{ provide: LOCK_INTEGRATION, useValue: integration }, LockIntegrationSubscriber];
}
