/**
 * Helpers for unit tests of code that uses nestjs-redis-lock, without Redis: `nestjs-redis-lock/testing`.
 * See docs/testing.md ("Testing code that uses locks").
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { lockContext } from '../core/context.js';
import type { LockRef } from '../core/lock-client.js';
import { LockTimeoutError } from '../core/errors.js';
import type { AcquireOptions, UsingOptions } from '../core/types.js';
import type { Lock } from '../core/types.js';
import type { LockService } from '../lock.service.js';

/** The public methods of LockService, as a mock implements them. */
export type LockServiceMock = Pick<
  LockService,
  'acquire' | 'tryAcquire' | 'using' | 'restore' | 'dispatchUnique' | 'isLocked' | 'forceRelease' | 'current' | 'on'
> & {
  /**
   * Keys "held by someone else": `using()`/`acquire()` (and so `@WithLock`/`@RouteLock` methods)
   * reject with LockTimeoutError on them, `tryAcquire()` resolves null, `dispatchUnique()` null,
   * `isLocked()` true. Change it during a test to simulate contention.
   */
  readonly busy: Set<string>;
};

/** Options of {@link createLockServiceMock}. */
export interface LockServiceMockOptions {
  /** Keys that start busy; see {@link LockServiceMock.busy}. */
  busy?: Iterable<string>;
}

/**
 * A stand-in for LockService that never touches a store: `using()` runs the function at once with a
 * fake held lock (inside the lock context, so `currentLock()` sees it), except on a key listed in
 * `busy`. It does not exclude anything: to test real mutual exclusion without Redis, use
 * `LockModule.forRoot({ store: 'memory' })`. Every method is an own property, so `jest.spyOn(mock, 'using')`
 * (or vitest's `vi.spyOn`) records calls. `on()` subscribes to nothing.
 *
 * @example
 * ```ts
 * const locks = createLockServiceMock();
 * const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
 *   .overrideProvider(LockService).useValue(locks)
 *   .compile();
 * const using = jest.spyOn(locks, 'using');
 * await moduleRef.get(AccountsService).transfer('a', 'b', 10); // a @WithLock method: calls the mock
 * expect(using).toHaveBeenCalledWith(['account:a', 'account:b'], expect.anything(), expect.any(Function));
 * locks.busy.add('account:a'); // now it rejects with LockTimeoutError (or does what its onTimeout says)
 * ```
 */
export function createLockServiceMock(options: LockServiceMockOptions = {}): LockServiceMock {
  const busy = new Set(options.busy ?? []);
  let fence = 0;
  const keysOf = (key: string | readonly string[]): string[] => [...new Set(typeof key === 'string' ? [key] : key)];
  const fakeLock = (keys: string[], ttl = 30_000, token = randomBytes(16).toString('base64url').slice(0, 22)): Lock => {
    let held = true;
    const controller = new AbortController();
    const fencingTokens = keys.map(() => ++fence);
    return {
      keys,
      key: keys[0]!,
      token,
      fencingToken: fencingTokens[0]!,
      fencingTokens,
      signal: controller.signal,
      validUntil: Date.now() + ttl,
      get isHeld() {
        return held;
      },
      extend: async () => undefined,
      release: async () => {
        const was = held;
        held = false;
        return was;
      },
    };
  };
  const take = (key: string | readonly string[], options?: AcquireOptions): Lock => {
    const keys = keysOf(key);
    if (keys.some((k) => busy.has(k))) throw new LockTimeoutError(keys, options?.wait ?? 0, 1000);
    return fakeLock(keys, options?.ttl);
  };
  const mock: LockServiceMock = {
    busy,
    acquire: async (key: string | string[], options?: AcquireOptions) => take(key, options),
    tryAcquire: async (key: string | string[], options?: Omit<AcquireOptions, 'wait'>) => {
      try {
        return take(key, options);
      } catch (error) {
        if (error instanceof LockTimeoutError) return null;
        throw error;
      }
    },
    using: async <T>(key: string | string[], options: UsingOptions, fn: (lock: Lock) => Promise<T> | T): Promise<T> => {
      const lock = take(key, options);
      try {
        return await lockContext.run({ owner: mock, lock, parent: lockContext.getStore() }, () => fn(lock));
      } finally {
        await lock.release();
      }
    },
    restore: async (key: string, token: string, options?: Pick<AcquireOptions, 'ttl'>) => fakeLock([key], options?.ttl, token),
    dispatchUnique: async <T>(key: string, _options: Pick<AcquireOptions, 'ttl' | 'wait'>, dispatch: (ref: LockRef) => Promise<T> | T) => {
      if (busy.has(key)) return null;
      return dispatch({ key, token: fakeLock([key]).token });
    },
    isLocked: async (key: string) => busy.has(key),
    forceRelease: async (key: string) => busy.delete(key),
    current: () => {
      for (let frame = lockContext.getStore(); frame; frame = frame.parent) if (frame.lock.isHeld) return frame.lock;
      return undefined;
    },
    on: () => () => undefined,
  };
  return mock;
}
