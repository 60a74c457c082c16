import { LockLostError } from '../errors/lock.errors.js';
import type { Lock } from '../interfaces/lock.interface.js';

/** Clock drift allowance on a ttl (as the Redlock algorithm): 1% plus 2 ms. @internal */
export const drift = (ttl: number): number => Math.floor(ttl * 0.01) + 2;

/** What a LockHandle needs from its engine. @internal */
export interface LockHost {
  extendLock(lock: LockHandle, ttl: number): Promise<boolean>;
  releaseLock(lock: LockHandle): Promise<boolean>;
  lockLost(lock: LockHandle, error: LockLostError): void;
}

/**
 * A held lock. Created by the engine; users see it through the {@link Lock} interface.
 * @internal
 */
export class LockHandle implements Lock {
  /** Created on first use of `signal`: most locks never need one. */
  private controller?: AbortController;
  private lostReason?: LockLostError;
  private state: 'held' | 'released' | 'lost' = 'held';
  private timer?: NodeJS.Timeout;
  private heartbeatUntil = Infinity;
  validUntil: number;

  constructor(
    private readonly host: LockHost,
    readonly keys: readonly string[],
    readonly token: string,
    readonly fencingTokens: readonly number[],
    readonly ttl: number,
    /** Epoch ms from which the ttl runs (at latest). */
    startedAt: number,
  ) {
    this.validUntil = startedAt + ttl - drift(ttl);
  }

  get key(): string {
    return this.keys[0]!;
  }

  get fencingToken(): number {
    return this.fencingTokens[0]!;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.lostReason) this.controller.abort(this.lostReason);
    }
    return this.controller.signal;
  }

  /** Why the lock was lost, if it was. */
  get lostError(): LockLostError | undefined {
    return this.lostReason;
  }

  get isHeld(): boolean {
    return this.state === 'held';
  }

  async extend(ttl: number = this.ttl): Promise<void> {
    if (this.state !== 'held') throw this.lostErrorFor('it was already released or lost');
    const sentAt = Date.now();
    const ok = await this.host.extendLock(this, ttl);
    if (!ok) {
      const error = this.lostErrorFor('it expired or another owner took it before it was extended');
      this.markLost(error);
      throw error;
    }
    if (this.state === 'held') this.validUntil = sentAt + ttl - drift(ttl);
  }

  release(): Promise<boolean> {
    this.stopHeartbeat();
    if (this.state === 'released') return Promise.resolve(false);
    const wasHeld = this.state === 'held';
    this.state = 'released';
    const released = this.host.releaseLock(this);
    return wasHeld ? released : released.then(() => false);
  }

  /**
   * Extends the lock every ttl/3 (with up to 10% jitter) until it is released, lost, or `maxHold`
   * ms have passed. The timer never keeps the process alive.
   */
  startHeartbeat(maxHold?: number): void {
    if (maxHold !== undefined) this.heartbeatUntil = Date.now() + maxHold;
    this.schedule(this.ttl / 3);
  }

  /** Marks the lock lost and aborts `signal` (once). @internal */
  markLost(error: LockLostError): void {
    if (this.state !== 'held') return;
    this.state = 'lost';
    this.lostReason = error;
    this.stopHeartbeat();
    this.controller?.abort(error);
    this.host.lockLost(this, error);
  }

  private schedule(delay: number): void {
    const jitter = 1 - Math.random() * 0.1;
    this.timer = setTimeout(() => void this.beat(), Math.max(1, Math.floor(delay * jitter)));
    this.timer.unref();
  }

  private async beat(): Promise<void> {
    this.timer = undefined;
    if (this.state !== 'held') return;
    if (Date.now() >= this.heartbeatUntil) {
      this.markLost(this.lostErrorFor('maxHold was reached, so the heartbeat stopped extending it'));
      return;
    }
    const ttl = Math.min(this.ttl, Math.max(1, Math.ceil(this.heartbeatUntil - Date.now())));
    try {
      await this.extend(ttl);
      if (this.state === 'held') this.schedule(this.ttl / 3);
    } catch (error) {
      if (this.state !== 'held') return;
      // The store did not answer: retry while the lock may still be valid, then give it up.
      const left = this.validUntil - Date.now();
      if (left <= 0) this.markLost(this.lostErrorFor(`it could not be extended in time (${(error as Error).message})`));
      else this.schedule(Math.min(left / 2, this.ttl / 6));
    }
  }

  private stopHeartbeat(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private lostErrorFor(reason: string): LockLostError {
    return new LockLostError(this.keys, reason);
  }
}
