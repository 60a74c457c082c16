import { monotonic } from './clock.js';
import { settlesWithin } from './deadlines.js';
import { LockShutdownError, LockUnavailableError, type LockTimeoutError } from './errors.js';
import { drift, type LockHandle } from './lock.js';
import { messages } from './messages.js';
import type { AcquireRequest, AcquireResult, LockStore, StoreEvent } from './store/store.js';
import { newToken } from './token.js';

/** Safety-net retry delay of the n-th wait: 100, 200, 400, 800, 1000 … ms, with jitter. */
const backoff = (attempt: number): number => Math.min(1000, 100 * 2 ** Math.min(attempt - 1, 4)) * (0.5 + Math.random() * 0.5);
/** Upper bound on attempts of one wait (the wait's deadline ends it long before). */
const MAX_ATTEMPTS = 100_000;
/** Waiters this far back in the queue (0-based) do not poll: a grant or a "you are next" message wakes them. */
const PASSIVE_RANK = 2;
/** How long, at most, giving back what a failed acquisition may hold is retried in the background, ms. */
const CLEANUP_RETRY_MS = 1000;

/** A busy answer of one attempt: when it was sent and the holder's fence it saw. */
interface Busy {
  readonly sentAt: number;
  readonly fence: number;
}

/** One pending wait: notifications from the store, the timer, or shutdown wake it. @internal */
export class Waiter {
  granted?: Extract<StoreEvent, { type: 'granted' }>;
  /** Busy answers that named the holder's fence, newest last (bounded). */
  readonly busy: Busy[] = [];
  /** Told by the store that it is now first in line. */
  promoted = false;
  /** The lock was handed to another waiter of the key: when, and for how long at most (its ttl). */
  handed?: { readonly at: number; readonly ttl: number };
  /** Settles when the wait is over and the queue has been left. */
  done: Promise<void>;
  finish!: () => void;
  shutdown = false;
  private woken = false;
  private wake?: (why: 'event' | 'timer' | 'reschedule') => void;
  private timer?: NodeJS.Timeout;

  constructor() {
    this.done = new Promise((resolve) => (this.finish = resolve));
  }

  notify(event: StoreEvent): void {
    if (event.type === 'next' || event.type === 'handed') {
      // Not a reason to try now, but to sleep differently: first in line now watches the holder's
      // expiry; further back, the new holder's expiry (it may have crashed while it waited).
      if (event.type === 'next') this.promoted = true;
      else this.handed = { at: monotonic(), ttl: event.ttl };
      this.wake?.('reschedule');
      return;
    }
    if (event.type === 'granted') this.granted = event;
    this.woken = true;
    this.wake?.('event');
  }

  stop(): void {
    this.shutdown = true;
    this.woken = true;
    this.wake?.('event');
  }

  /**
   * Resolves on a notification, a reason to sleep differently, or after `delay` ms. The timer keeps the
   * process alive, as a wait on a socket does.
   */
  next(delay: number): Promise<'event' | 'timer' | 'reschedule'> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve('event');
    }
    return new Promise((resolve) => {
      this.wake = (why) => {
        clearTimeout(this.timer);
        this.wake = undefined;
        this.woken = false;
        resolve(why);
      };
      this.timer = setTimeout(() => this.wake?.('timer'), Math.max(0, Math.ceil(delay)));
    });
  }
}

/** What an acquisition needs from its engine (LockClient). @internal */
export interface AcquisitionHost {
  readonly store: LockStore;
  readonly connectTimeout: number;
  /** Pending waits, so that close() can stop them. */
  readonly waiters: Set<Waiter>;
  /** Give-backs still being retried, so that close() can wait for them. */
  readonly cleanups: Set<Promise<unknown>>;
  isClosed(): boolean;
  /** A store call bounded by `limit` ms, its failures mapped to LockErrors. */
  call<T>(operation: string, pending: Promise<T>, keys: readonly string[], limit: number): Promise<T>;
  /** The handle of a lock `acquisition` took, tracked and announced. */
  hold(acquisition: Acquisition, fences: readonly number[], validUntil: number): LockHandle;
  /** The timeout error of a wait that ended, announced. */
  timeout(acquisition: Acquisition, last: AcquireResult): LockTimeoutError;
}

/** How many busy answers in a row saw the same holder, and since when (the last of them). */
interface SameHolder {
  readonly fence?: number;
  readonly count: number;
  readonly since: number;
}

/**
 * One acquisition, in named phases: a first plain attempt ({@link firstAttempt}), listening for
 * notifications ({@link listen}), queued attempts with naps between them ({@link queue}, {@link nap}),
 * taking a lock from an answer or a grant ({@link accept}, {@link fromGrant}), and giving back whatever
 * a failed acquisition's token may hold ({@link giveBack}).
 *
 * Bounds: no attempt starts after `deadline` (start + wait); nothing of the acquisition outlives `end`
 * (deadline + connectTimeout). A store that does not answer fails one attempt, not the whole wait: the
 * waiter retries until its deadline and only then rejects, with the store's error if the last attempt
 * failed too.
 * @internal
 */
export class Acquisition {
  /** The owner id the lock is taken under. */
  readonly token = newToken();
  /** Monotonic ms at which the acquisition started. */
  readonly start = monotonic();
  private readonly deadline: number;
  private readonly end: number;
  private readonly request: AcquireRequest;
  private readonly waiter = new Waiter();
  /** Some attempt's outcome is unknown (no answer, connection lost): the store may hold the token. */
  private uncertain = false;
  /** The acquisition ended without a lock: whatever the token still holds must be given back. */
  private failed = false;
  /** The store said the token holds the lock (it is given back if the acquisition does not keep it). */
  private holds = false;
  /** The last attempt's transient failure, thrown if the wait ends with it. */
  private failure?: LockUnavailableError;
  private result: AcquireResult = { acquired: false, pttl: -1 };
  private unwatch?: () => void;
  private finished = false;
  private queued = false;

  constructor(
    private readonly host: AcquisitionHost,
    readonly keys: string[],
    readonly ttl: number,
    readonly wait: number,
    /** For events and logs (bounded: a method name or a user's label). */
    readonly label?: string,
  ) {
    this.deadline = this.start + wait;
    this.end = this.deadline + host.connectTimeout;
    this.request = { keys, token: this.token, ttl, queueFor: Math.max(1, Math.ceil(wait)) };
  }

  async run(): Promise<LockHandle> {
    try {
      const first = await this.firstAttempt();
      if (first) return first;
      await this.listen();
      return await this.queue();
    } catch (error) {
      this.failed = true;
      // Leave the queue and give back whatever this token may hold (a grant that raced with giving
      // up, an attempt whose answer was lost). Awaited when the store answers, so that no key of this
      // token is left once we reject; retried in the background when it does not.
      if (this.queued || this.uncertain || this.holds) await this.giveBack();
      throw error;
    } finally {
      this.finished = true;
      this.unwatch?.();
      this.host.waiters.delete(this.waiter);
      this.waiter.finish();
    }
  }

  /**
   * On a key this process already listens to (it was contended a moment ago), nothing: the first
   * attempt is already a queued one (one round trip). Otherwise one attempt without queueing, so an
   * uncontended acquire stays one plain attempt. Throws the timeout when there is no wait.
   */
  private async firstAttempt(): Promise<LockHandle | undefined> {
    const hot = this.wait > 0 && (this.host.store.listening?.(this.keys) ?? false);
    if (hot) return undefined;
    const first = await this.attempt({ keys: this.keys, token: this.token, ttl: this.ttl });
    this.result = first.result;
    if (this.result.acquired) {
      const lock = await this.fromResult(this.result, first.sentAt);
      if (lock) return lock;
    }
    if (this.wait === 0 || monotonic() >= this.deadline) throw this.failure ?? this.host.timeout(this, this.result);
    return undefined;
  }

  /**
   * Listen before queueing, so no hand-off is missed; but never let a subscription that does not
   * answer hold up the attempts (the naps retry without notifications). A refusal (e.g. a Redis user
   * without SUBSCRIBE) is an error: no silent fallback to polling.
   */
  private async listen(): Promise<void> {
    if (this.host.isClosed()) throw new LockShutdownError(messages.closed());
    this.host.waiters.add(this.waiter);
    const store = this.host.store;
    let watchError: Error | undefined;
    // The stop function is taken from the store's own promise, not the bounded one: a subscription
    // that answers after this acquisition gave up is still stopped.
    const subscribing = store.watch
      ? store.watch(this.keys, this.token, (event) => this.waiter.notify(event))
      : Promise.resolve(() => undefined);
    subscribing.then(
      (stop) => {
        if (this.finished) stop();
        else this.unwatch = stop;
      },
      () => undefined,
    );
    const watching = this.host.call('watch', subscribing, this.keys, this.end - monotonic()).then(
      () => undefined,
      (error: unknown) => {
        watchError = error instanceof Error ? error : new Error(String(error));
      },
    );
    await settlesWithin(watching, Math.min(Math.max(0, this.deadline - monotonic()), this.host.connectTimeout));
    if (watchError !== undefined && !(watchError instanceof LockUnavailableError) && !this.host.isClosed()) throw watchError;
    this.queued = true;
  }

  /** Queued attempts until one takes the lock, a grant arrives, the deadline passes or shutdown. */
  private async queue(): Promise<LockHandle> {
    const waiter = this.waiter;
    let rank: number | undefined;
    let pttl = -1;
    let sameHolder: SameHolder = { count: 1, since: monotonic() };
    for (let n = 1; n <= MAX_ATTEMPTS && !waiter.shutdown; n++) {
      const next = await this.attempt(this.request);
      this.result = next.result;
      const result = next.result;
      if (result.acquired) {
        const lock = await this.fromResult(result, next.sentAt);
        if (lock) return lock;
      } else if (!this.failure) {
        if (result.fence !== undefined && result.fence > 0 && waiter.busy.push({ sentAt: next.sentAt, fence: result.fence }) > 8)
          waiter.busy.shift();
        sameHolder =
          result.fence === undefined || result.fence !== sameHolder.fence
            ? { fence: result.fence, count: 1, since: monotonic() }
            : { fence: result.fence, count: sameHolder.count + 1, since: monotonic() };
        rank = result.rank;
        pttl = result.pttl;
      }
      await this.nap(n, rank, pttl, sameHolder);
      if (waiter.granted) {
        const lock = await this.fromGrant();
        if (lock) return lock;
        continue; // stale or unconfirmed grant: the next attempt finds out at once
      }
      if (monotonic() >= this.deadline || waiter.shutdown) break;
    }
    if (waiter.shutdown || this.host.isClosed()) throw new LockShutdownError(messages.shutdown(this.keys), this.keys);
    throw this.failure ?? this.host.timeout(this, this.result);
  }

  /**
   * Sleeps until a notification, the holder's expiry or the safety-net retry. The first two in line
   * retry on a timer (100 ms doubling to 1 s, never later than the holder's expiry). Those further back
   * only check at the expiry of whoever holds the lock, doubling the interval while the same holder
   * keeps extending it: their cost grows with the log of the wait, not with its length.
   */
  private async nap(n: number, rank: number | undefined, pttl: number, sameHolder: SameHolder): Promise<void> {
    const waiter = this.waiter;
    waiter.handed = undefined;
    for (let naps = 0; naps < 1_000 && !waiter.granted && !waiter.shutdown; naps++) {
      const left = this.deadline - monotonic();
      if (left <= 0) return;
      const passive = !waiter.promoted && rank !== undefined && rank >= PASSIVE_RANK;
      let delay: number;
      const handed = waiter.handed as Waiter['handed']; // set by notify() while we slept
      if (!passive) delay = Math.min(backoff(n), pttl >= 0 ? pttl + 1 : Infinity, left);
      else if (handed) delay = Math.min(handed.at + handed.ttl + 1 + Math.random() * 20 - monotonic(), left);
      else delay = Math.min(sameHolder.since + (pttl >= 0 ? pttl + 1 : 1000) * 2 ** Math.min(sameHolder.count - 1, 10) - monotonic(), left);
      if ((await waiter.next(delay)) !== 'reschedule') return;
    }
  }

  /** One attempt; a transient failure fails this attempt only (recorded, the outcome is then unknown). */
  private async attempt(request: AcquireRequest): Promise<{ result: AcquireResult; sentAt: number }> {
    const sentAt = monotonic();
    try {
      const result = await this.send(request);
      this.failure = undefined;
      return { result, sentAt };
    } catch (error) {
      if (!(error instanceof LockUnavailableError)) throw error;
      this.failure = error;
      this.uncertain = true;
      return { result: { acquired: false, pttl: -1 }, sentAt };
    }
  }

  /**
   * One acquire call, bounded by the acquisition's end. An answer that comes after we gave up is
   * given back if the acquisition failed (while it runs, its next attempt finds the lock its own).
   */
  private send(request: AcquireRequest): Promise<AcquireResult> {
    const store = this.host.store;
    const pending = store.acquire(request);
    const bounded = this.host.call('acquire', pending, request.keys, this.end - monotonic());
    bounded.catch(() =>
      pending
        .then((late) => {
          if (late.acquired && this.failed) return store.leave(request);
          return undefined;
        })
        .catch(() => undefined),
    );
    return bounded;
  }

  /** The ttl counts from when the store sent what took the lock (the store knows best), else from our send time. */
  private fromResult(result: Extract<AcquireResult, { acquired: true }>, sentAt: number): Promise<LockHandle | undefined> {
    const basis = Math.max(sentAt, result.validFrom ?? sentAt);
    return this.accept(
      result.fences,
      basis + (result.remaining === undefined ? this.ttl : Math.min(this.ttl, result.remaining)) - drift(this.ttl),
    );
  }

  /**
   * A lock we hold in the store, valid here until `expiresAt`. With less than half its ttl left (a
   * grant that waited long for its message, a slow answer), confirm it with one extension first.
   */
  private async accept(fences: readonly number[], expiresAt: number): Promise<LockHandle | undefined> {
    const { keys, token, ttl } = this;
    // The store holds the lock for this token from here on: if we do not keep it, it must be given back.
    this.holds = true;
    if (this.host.isClosed()) throw new LockShutdownError(messages.shutdown(keys), keys);
    let until = expiresAt;
    if (until - monotonic() < ttl / 2) {
      const sentAt = monotonic();
      const ok = await this.host
        .call('extend', this.host.store.extend(keys, token, ttl), keys, this.end - sentAt)
        .catch((error: unknown) => {
          if (error instanceof LockUnavailableError) {
            this.failure = error;
            this.uncertain = true;
            return false;
          }
          throw error;
        });
      if (!ok) {
        this.holds = false;
        return undefined;
      }
      until = sentAt + ttl - drift(ttl);
      if (this.host.isClosed()) throw new LockShutdownError(messages.shutdown(keys), keys);
    }
    return this.host.hold(this, fences.length === keys.length ? fences : keys.map(() => fences[0]!), until);
  }

  /**
   * A grant from a notification. Fencing tokens of a key only grow, so the grant ran after every busy
   * attempt that saw a holder with a lower fence, and before any that saw one at or above it (then it
   * is stale: that lock was ours once and is gone). Its validity counts from the newest busy attempt's
   * send time. Without such an attempt the next attempt finds out (it answers "yours" with the ttl left).
   */
  private async fromGrant(): Promise<LockHandle | undefined> {
    const granted = this.waiter.granted!;
    this.waiter.granted = undefined;
    const seen = this.waiter.busy;
    if (seen.length === 0 || seen.some((b) => b.fence >= granted.fence)) return undefined;
    return this.accept([granted.fence], seen[seen.length - 1]!.sentAt + this.ttl - drift(this.ttl));
  }

  /** Gives back what a failed acquisition's token may hold; bounded here, then retried in the background. */
  private async giveBack(): Promise<void> {
    const { host, request, ttl } = this;
    const first = host.call('leave', host.store.leave(request), request.keys, Math.max(50, this.end - monotonic()));
    const ok = await first.then(
      () => true,
      () => false,
    );
    if (ok || host.isClosed()) return;
    // The store did not answer: keep trying for a while (the lock expires after its ttl anyway).
    const until = monotonic() + Math.min(ttl, CLEANUP_RETRY_MS * 10);
    const retry = (async () => {
      for (let n = 1; n <= 20 && monotonic() < until && !host.isClosed(); n++) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(CLEANUP_RETRY_MS, 50 * 2 ** n)).unref());
        const done = await host.call('leave', host.store.leave(request), request.keys, host.connectTimeout).then(
          () => true,
          () => false,
        );
        if (done) return;
      }
    })();
    host.cleanups.add(retry);
    void retry.finally(() => host.cleanups.delete(retry));
  }
}
