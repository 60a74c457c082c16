import { LockLostError } from './errors.js';
import type { Lock } from './types.js';
import { validateTtl } from './validate.js';
import { monotonic } from './clock.js';

/** Clock drift allowance on a ttl (as the Redlock algorithm): 1% plus 2 ms. @internal */
export const drift = (ttl: number): number => Math.floor(ttl * 0.01) + 2;

const MAX_HOLD_REACHED = 'maxHold was reached, so the heartbeat stopped extending it';

/** What a LockHandle needs from its engine. @internal */
export interface LockHost {
  /** Owner-checked extension; `budget` ms: how long the answer is worth waiting for (the remaining validity). */
  extendLock(lock: LockHandle, ttl: number, budget: number): Promise<boolean>;
  releaseLock(lock: LockHandle): Promise<boolean>;
  lockLost(lock: LockHandle, error: LockLostError): void;
  /** An extension succeeded: `ttl` ms from when it was sent; `heartbeat`: the heartbeat's, not `extend()`'s. */
  lockExtended(lock: LockHandle, ttl: number, heartbeat: boolean): void;
}

/**
 * A held lock. Created by the engine; users see it through the {@link Lock} interface.
 *
 * Validity is measured on this process's monotonic clock from a moment known to be before the ttl
 * started on the server (when the request that set it was sent), minus drift. When it runs out the
 * lock is lost here and now, without a round trip: `isHeld`, `signal` and `currentLock()` see it at
 * once (also right after an event-loop stall, before any timer ran), and a timer tells listeners.
 * @internal
 */
export class LockHandle implements Lock {
  /** Created on first use of `signal`: most locks never need one. */
  private controller?: AbortController;
  private lostReason?: LockLostError;
  private state: 'held' | 'released' | 'lost' = 'held';
  private timer?: NodeJS.Timeout;
  /** Monotonic ms at which `timer` fires (Infinity: none). */
  private timerAt = Infinity;
  /** The timer already woke once at the heartbeat's moment without a heartbeat (see arm()). */
  private woken = false;
  /** Monotonic ms at which the validity ends. */
  private expiresAt: number;
  /** Heartbeat: on while > 0; monotonic ms after which it stops extending (maxHold). */
  private heartbeatUntil = 0;
  /** The heartbeat stopped because of maxHold: the lock is left to expire, and that counts as lost for maxHold. */
  private capped = false;
  private beating = false;
  /** Monotonic ms at which the handle was made (the lock taken or restored): `heldFor` counts from it. */
  readonly acquiredAt: number;

  constructor(
    private readonly host: LockHost,
    readonly keys: readonly string[],
    readonly token: string,
    readonly fencingTokens: readonly number[],
    readonly ttl: number,
    /** Monotonic ms at which the validity ends (already minus drift). */
    expiresAt: number,
    /** The acquisition's label, for events. */
    readonly label?: string,
  ) {
    this.acquiredAt = monotonic();
    this.expiresAt = expiresAt;
    this.arm();
  }

  get key(): string {
    return this.keys[0]!;
  }

  get fencingToken(): number {
    return this.fencingTokens[0]!;
  }

  /** Epoch ms (this process's wall clock, read now) at which the validity ends. */
  get validUntil(): number {
    return Math.floor(Date.now() + (this.expiresAt - monotonic()));
  }

  get signal(): AbortSignal {
    this.checkExpiry();
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.lostReason) this.controller.abort(this.lostReason);
    }
    return this.controller.signal;
  }

  /** Why the lock was lost, if it was (also: expired locally, or found not ours at release). */
  get lostError(): LockLostError | undefined {
    this.checkExpiry();
    return this.lostReason;
  }

  get isHeld(): boolean {
    this.checkExpiry();
    return this.state === 'held';
  }

  /** Milliseconds of validity left (0 when none). @internal */
  remaining(): number {
    return Math.max(0, this.expiresAt - monotonic());
  }

  async extend(ttl: number = this.ttl): Promise<void> {
    return this.renew(validateTtl('lock.extend()', ttl), false);
  }

  /** `extend()`, or the heartbeat's extension (`heartbeat`: for the `extended` event). */
  private async renew(ms: number, heartbeat: boolean): Promise<void> {
    this.checkExpiry();
    if (this.state !== 'held') throw this.lostReason ?? this.lostErrorFor('it was already released');
    const sentAt = monotonic();
    let ok: boolean;
    try {
      ok = await this.host.extendLock(this, ms, this.expiresAt - sentAt);
    } catch (error) {
      // No answer: the extension may still have run on the server. If it shortened the ttl, the lock
      // may now expire sooner there than the validity we had: assume it did.
      this.expiresAt = Math.min(this.expiresAt, sentAt + ms - drift(ms));
      this.checkExpiry();
      this.arm();
      throw error;
    }
    this.checkExpiry();
    if (this.state !== 'held') {
      // Validity ran out while the answer was on its way: the lock counts as lost, whatever the answer.
      throw this.lostReason ?? this.lostErrorFor('it was released while being extended');
    }
    if (!ok) {
      const error = this.lostErrorFor('it expired or another owner took it before it was extended');
      this.markLost(error);
      throw error;
    }
    // The server set the new ttl after we sent the request, so it runs at least until sentAt + ttl.
    this.expiresAt = sentAt + ms - drift(ms);
    this.arm();
    this.host.lockExtended(this, ms, heartbeat);
  }

  release(): Promise<boolean> {
    this.checkExpiry();
    this.disarm();
    this.heartbeatUntil = 0;
    if (this.state === 'released') return Promise.resolve(false);
    const wasHeld = this.state === 'held';
    this.state = 'released';
    const released = this.host.releaseLock(this);
    if (!wasHeld) return released.then(() => false);
    return released.then((ours) => {
      // Not ours any more although we thought we held it: it was lost under the work.
      if (!ours) this.lose(this.lostErrorFor('it was no longer held by this owner when it was released'));
      return ours;
    });
  }

  /**
   * Extends the lock while it is held: each time the validity left drops to two thirds of the ttl
   * (with up to 5% jitter), so a lock with little left (restored, granted late) is extended at once.
   * Stops after `maxHold` ms. The timer never keeps the process alive.
   */
  startHeartbeat(maxHold?: number): void {
    this.heartbeatUntil = maxHold === undefined ? Infinity : monotonic() + maxHold;
    this.capped = false;
    // Right after acquiring, the timer is already set for the heartbeat's moment (arm()): keep it.
    if (this.timer && this.timerAt <= this.expiresAt - (2 * this.ttl) / 3) return;
    this.arm();
  }

  /** Hands the lock over to someone else (dispatchUnique): no heartbeat, no expiry signal, no release from here. @internal */
  detach(): void {
    this.disarm();
    this.heartbeatUntil = 0;
    if (this.state === 'held') this.state = 'released';
  }

  /** Marks the lock lost and aborts `signal` (once). @internal */
  markLost(error: LockLostError): void {
    if (this.state !== 'held') return;
    this.state = 'lost';
    this.disarm();
    this.lose(error);
  }

  private lose(error: LockLostError): void {
    if (this.lostReason) return;
    this.lostReason = error;
    this.controller?.abort(error);
    this.host.lockLost(this, error);
  }

  /** Synchronous: a lock whose validity ended is lost now, even if its timer has not run yet. */
  private checkExpiry(): void {
    if (this.state === 'held' && monotonic() >= this.expiresAt) {
      this.markLost(this.lostErrorFor(this.capped ? MAX_HOLD_REACHED : 'its validity ran out before it was extended'));
    }
  }

  /**
   * One timer per lock: the next heartbeat or the end of validity, whichever comes first. A lock without
   * a heartbeat (yet) is also woken once at the heartbeat's moment: most locks get their heartbeat right
   * after they are taken, and then find the timer set already (a timer re-armed on every acquisition was
   * a measurable part of an uncontended `using()`); a lock that never gets one pays one early wake-up.
   */
  private arm(): void {
    this.disarm();
    if (this.state !== 'held') return;
    const now = monotonic();
    let at = this.expiresAt;
    if (!this.beating && (this.heartbeatUntil > 0 || !this.woken)) {
      const beatAt = this.expiresAt - (2 * this.ttl) / 3 - Math.random() * 0.05 * this.ttl;
      if (this.heartbeatUntil > 0 || beatAt > now) at = Math.min(at, beatAt);
    }
    this.timerAt = at;
    this.timer = setTimeout(() => this.tick(), Math.max(0, Math.ceil(at - now)));
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private tick(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.heartbeatUntil === 0) this.woken = true;
    this.checkExpiry();
    if (this.state !== 'held') return;
    if (this.heartbeatUntil > 0 && !this.beating && this.remaining() <= (2 * this.ttl) / 3 + 0.05 * this.ttl) void this.beat();
    else this.arm();
  }

  private async beat(): Promise<void> {
    if (monotonic() >= this.heartbeatUntil) {
      this.markLost(this.lostErrorFor(MAX_HOLD_REACHED));
      return;
    }
    const ttl = Math.min(this.ttl, Math.max(1, Math.ceil(this.heartbeatUntil - monotonic())));
    if (monotonic() + ttl - drift(ttl) <= this.expiresAt) {
      // So close to maxHold that an extension would not outlast the validity left: stop here and let
      // the lock expire (lost because of maxHold, not because an extension came too late).
      this.heartbeatUntil = 0;
      this.capped = true;
      this.arm();
      return;
    }
    this.beating = true;
    this.arm(); // the expiry stays armed while the extension is on its way
    try {
      await this.renew(Math.max(ttl, 10), true);
    } catch (error) {
      if (this.state === 'held' && !(error instanceof LockLostError)) {
        // The store did not answer: try again soon while the lock may still be valid; the expiry
        // timer gives it up when the validity ends.
        this.beating = false;
        this.retryBeat(Math.min(this.remaining() / 2, this.ttl / 6));
        return;
      }
    }
    this.beating = false;
    this.arm();
  }

  private retryBeat(delay: number): void {
    this.disarm();
    if (this.state !== 'held') return;
    const at = Math.min(this.expiresAt, monotonic() + delay);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = Infinity;
        this.checkExpiry();
        if (this.state === 'held') void this.beat();
      },
      Math.max(0, Math.ceil(at - monotonic())),
    );
    this.timer.unref();
  }

  private lostErrorFor(reason: string): LockLostError {
    return new LockLostError(this.keys, reason);
  }
}
