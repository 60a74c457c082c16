import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import type { LockClient, LockEvents, LockRef, LockStats } from './core/lock-client.js';
import type { AcquireOptions, UsingOptions } from './core/types.js';
import type { LockModuleOptions } from './interfaces/lock-options.interface.js';
import type { Lock } from './core/types.js';
import { createLockClient, LOCK_MODULE_OPTIONS } from './lock.module-definition.js';
import {
  lockServiceInternals,
  registerLockApp,
  unregisterLockApp,
  unregisterLockService,
  type LockApp,
  type LockServiceLike,
} from './lock.registry.js';
import { currentLock } from './core/context.js';
import { LockUnavailableError } from './core/errors.js';
import { messages } from './core/messages.js';

/**
 * Distributed locks on the module's store. Inject it anywhere LockModule is visible.
 *
 * @example
 * ```ts
 * constructor(private readonly locks: LockService) {}
 *
 * async credit(accountId: string, amount: number) {
 *   return this.locks.using(`account:${accountId}`, { ttl: 10_000, wait: 2_000 }, async (lock) => {
 *     const balance = await this.repo.balance(accountId);
 *     await this.repo.save(accountId, balance + amount, lock.fencingToken);
 *   });
 * }
 * ```
 */
@Injectable()
export class LockService implements OnModuleInit, OnApplicationShutdown {
  /** The framework-free engine: `#`-private, so neither the d.ts nor the instance shows it. */
  readonly #client: LockClient;
  readonly #logger = new Logger('LockService');

  constructor(@Inject(LOCK_MODULE_OPTIONS) options: LockModuleOptions) {
    // Waits longer than slowWaitMs and timeouts of waits are reported by the engine, which knows each
    // acquisition's wait, without an 'acquired' listener (that would build an event per acquisition).
    this.#client = createLockClient(options, (message) => this.#logger.warn(message));
    // A lost lock is worth a warning in any deployment; a requeued job is routine contention.
    this.#client.on('lost', ({ error, label }) => this.#logger.warn(label ? messages.lostWithLabel(label, error.message) : error.message));
    this.#client.on('requeued', ({ keys, delay, jobId }) =>
      this.#logger.debug(`Job ${jobId ?? '?'} requeued for ${delay} ms: the lock on ${keys.join(', ')} was busy.`),
    );
    // The decorators' 'requeued' event goes through the engine; a mock LockService has no entry.
    lockServiceInternals.set(this, { client: this.#client });
  }

  /**
   * Takes the lock on `key` (several keys: all or nothing), waiting up to `wait` ms.
   * Release it with `lock.release()` in a `finally`. Pass `autoExtend: true` for a heartbeat.
   * @throws LockTimeoutError when it could not be had within `wait`.
   * @throws LockArgumentError for an invalid key, ttl or wait (before Redis is touched).
   * @throws LockUnavailableError when the store does not answer.
   */
  acquire(key: string | string[], options?: AcquireOptions): Promise<Lock> {
    return this.#client.acquire(key, options);
  }

  /** One attempt, never waits: the lock, or null when it is held by someone else. */
  tryAcquire(key: string | string[], options?: Omit<AcquireOptions, 'wait'>): Promise<Lock | null> {
    return this.#client.tryAcquire(key, options);
  }

  /**
   * Runs `fn` while holding the lock and always releases it. The lock is extended while `fn` runs
   * (unless `autoExtend: false`), re-entrant within the same async call chain, and `fn`'s result or
   * error reaches you unchanged.
   * @throws LockTimeoutError when the lock could not be had within `wait`.
   */
  using<T>(key: string | string[], options: UsingOptions, fn: (lock: Lock) => Promise<T> | T): Promise<T> {
    return this.#client.using(key, options, fn);
  }

  /**
   * Rebuilds a lock from a token taken elsewhere (e.g. locked at job dispatch, released in the worker).
   * @throws LockLostError when that token no longer holds the key.
   */
  restore(key: string, token: string, options?: Pick<AcquireOptions, 'ttl' | 'autoExtend' | 'maxHold' | 'tenant'>): Promise<Lock> {
    return this.#client.restore(key, token, options);
  }

  /**
   * Lock at dispatch, release in the worker: a second identical job is refused while the first is
   * queued or running. Resolves null (and does not call `dispatch`) when the key is already locked.
   *
   * @example
   * ```ts
   * const job = await locks.dispatchUnique(`report:${id}`, { ttl: 10 * 60_000 }, (lock) =>
   *   queue.add('report', { id, lock }));
   * if (!job) throw new ConflictException('a report for this id is already queued');
   * // in the processor:
   * const lock = await locks.restore(job.data.lock.key, job.data.lock.token, { autoExtend: true, tenant: job.data.lock.tenant });
   * try { ... } finally { await lock.release(); }
   * ```
   */
  dispatchUnique<T>(
    key: string,
    options: Pick<AcquireOptions, 'ttl' | 'wait' | 'tenant'>,
    dispatch: (ref: LockRef) => Promise<T> | T,
  ): Promise<T | null> {
    return this.#client.dispatchUnique(key, options, dispatch);
  }

  /** Whether anyone holds `key` now (under `tenant`, or the resolver's tenant: see docs/tenancy.md). */
  isLocked(key: string, options?: Pick<AcquireOptions, 'tenant'>): Promise<boolean> {
    return this.#client.isLocked(key, options);
  }

  /** Operator escape hatch: deletes the lock whoever holds it, and wakes the next waiter. */
  forceRelease(key: string, options?: Pick<AcquireOptions, 'tenant'>): Promise<boolean> {
    return this.#client.forceRelease(key, options);
  }

  /**
   * Locks this process holds now and acquisitions under way (e.g. for a gauge): counted in memory,
   * no Redis call.
   */
  stats(): LockStats {
    return this.#client.stats();
  }

  /** The lock held by the current `@WithLock`/`using()` call chain, if any. */
  current(): Lock | undefined {
    return currentLock();
  }

  /**
   * Subscribes to lock events: `acquiring`, `acquired`, `released`, `extended`, `lost`, `timeout`,
   * `failed`, `requeued`, `idempotent` (see {@link LockEvents} for each payload). Every event is also
   * published on the `node:diagnostics_channel` channel `nestjs-redis-lock:<event>` ({@link LOCK_CHANNELS}).
   * Listeners run synchronously inside the lock's code path: keep them cheap and never throw.
   * @returns the unsubscribe function.
   * @example
   * ```ts
   * const off = locks.on('acquired', ({ label, waited }) => waitHistogram.observe({ label: label ?? 'none' }, waited));
   * ```
   */
  on<E extends keyof LockEvents>(event: E, listener: (...args: LockEvents[E]) => void): () => void {
    this.#client.on(event, listener as never);
    return () => void this.#client.off(event, listener as never);
  }

  /**
   * Nest lifecycle hook (called by Nest, not by you): checks at boot that the Redis user may run what the module needs (scripts, the prefix's
   * keys, PUBLISH/SUBSCRIBE on its channels): a definite refusal (missing permission, wrong password,
   * a database the server refuses) fails the boot with a LockStoreError naming it. A Redis that does
   * not answer within connectTimeout only logs a warning: locks then wait for it as usual.
   */
  async onModuleInit(): Promise<void> {
    try {
      await this.#client.checkStore();
    } catch (error) {
      if (error instanceof LockUnavailableError) {
        this.#logger.warn(`Could not check the Redis permissions at boot: ${error.message}`);
        return;
      }
      // Nest runs no shutdown hook after a failed init: close what the module opened, or its
      // connection would keep reconnecting and the process would never exit.
      unregisterLockService(this);
      await this.#client.close();
      throw error;
    }
  }

  /** Stops heartbeats, rejects pending waits, releases held locks and closes connections the module opened. */
  async onApplicationShutdown(): Promise<void> {
    unregisterLockService(this);
    await this.#client.close();
  }
}

/**
 * Internal provider of LockModule: registers its application for the decorators. It is given the
 * `LockService` the container resolves — the real one, or a mock from `overrideProvider(LockService)` —
 * so `@WithLock`/`@RouteLock` methods of this app call that one. It registers from its constructor,
 * because a BullMQ worker (a global module, whose hooks run first) may run a job before any
 * `onModuleInit` of ours, and `Test.createTestingModule().compile()` runs no hook at all. @internal
 */
@Injectable()
export class LockRegistrar implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly #app: LockApp;
  /** Singleton instances of this app, for `owns()`. */
  #instances?: WeakSet<object>;
  #bootstrapped = false;
  readonly #discovery: DiscoveryService;

  constructor(@Inject(LockService) service: LockServiceLike, @Inject(DiscoveryService) discovery: DiscoveryService) {
    this.#discovery = discovery;
    this.#app = { service, owns: (instance) => this.#owns(instance) };
    registerLockApp(this.#app);
  }

  /**
   * Whether this app's container created `instance`. While the app initialises (a BullMQ worker may
   * run a job from its onModuleInit) a miss rebuilds the set; once bootstrapped the set is complete,
   * so a miss (e.g. a request-scoped instance) costs no rescan.
   */
  #owns(instance: object): boolean {
    if (!this.#instances || (!this.#bootstrapped && !this.#instances.has(instance))) {
      const wrappers = [...this.#discovery.getProviders(), ...this.#discovery.getControllers()];
      this.#instances = new WeakSet(
        wrappers.map((w): unknown => w.instance).filter((i): i is object => typeof i === 'object' && i !== null),
      );
    }
    return this.#instances.has(instance);
  }

  onApplicationBootstrap(): void {
    this.#bootstrapped = true;
    this.#instances = undefined;
  }

  onApplicationShutdown(): void {
    unregisterLockApp(this.#app);
  }
}
