import { AsyncLocalStorage } from 'node:async_hooks';
import type { Lock } from './types.js';

/** One locked section of the current async call chain. @internal */
export interface LockFrame {
  /** The engine that took it: two apps in one process never share a lock through the context. */
  readonly owner: object;
  readonly lock: Lock;
  readonly parent?: LockFrame;
}

/** @internal */
export const lockContext = new AsyncLocalStorage<LockFrame>();

/**
 * The lock held by the innermost `@WithLock`/`using()` section of the current async call chain,
 * or undefined outside one. Use it to read `fencingToken` or `signal` without passing the lock around.
 *
 * @example
 * ```ts
 * @WithLock((id: string) => `account:${id}`)
 * async credit(id: string, amount: number) {
 *   await this.repo.save(id, amount, { fence: currentLock()!.fencingToken });
 * }
 * ```
 */
export function currentLock(): Lock | undefined {
  for (let frame = lockContext.getStore(); frame; frame = frame.parent) {
    if (frame.lock.isHeld) return frame.lock;
  }
  return undefined;
}

/** A lock of `owner` held by this call chain that covers every key, for re-entrancy. @internal */
export function heldInChain(owner: object, keys: readonly string[]): Lock | undefined {
  for (let frame = lockContext.getStore(); frame; frame = frame.parent) {
    if (frame.owner === owner && frame.lock.isHeld && keys.every((k) => frame.lock.keys.includes(k))) return frame.lock;
  }
  return undefined;
}
