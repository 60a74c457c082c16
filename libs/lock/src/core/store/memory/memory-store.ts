import { monotonic } from '../../clock.js';
import type {
  AcquireRequest,
  AcquireResult,
  InspectResult,
  LockStore,
  ReleaseOutcome,
  StoreEvent,
  StoreHealth,
  StoreListener,
} from '../store.js';
import { queueMember } from '../../token.js';
import { WatcherRegistry } from '../watchers.js';

interface Held {
  readonly token: string;
  readonly fence: number;
  /** The holder that handed it over, so its repeated release still answers "ours". */
  readonly previous?: string;
  expiresAt: number;
}

interface QueueEntry {
  readonly member: string;
  readonly token: string;
  readonly ttl: number;
  /** Monotonic ms after which the entry is dead (joined + budget). */
  readonly until: number;
  readonly multi: boolean;
}

/**
 * A store inside one process with the same semantics as the Redis store (atomic all-or-nothing
 * acquire, owner-checked release, extend, expiry, FIFO hand-off with ranks, queue
 * deadlines counted from joining, fencing tokens). Tokens are compared exactly.
 * For unit tests and single-process development: it does not lock across processes.
 */
export class MemoryLockStore implements LockStore {
  private readonly locks = new Map<string, Held>();
  private readonly queues = new Map<string, QueueEntry[]>();
  private readonly watchers = new WatcherRegistry();
  /** Idempotency records (expired ones are dropped when read). */
  private readonly records = new Map<string, { readonly value: string; readonly expiresAt: number }>();
  private recordSweepAt = 1024;
  private fence = 0;

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const { keys, token, ttl, queueFor } = request;
    const now = monotonic();
    const queued = queueFor !== undefined;
    const entry = this.entry(token, ttl, queueFor ?? 0, keys.length > 1, now);
    if (keys.length === 1) {
      const key = keys[0]!;
      const value = this.value(key, now);
      if (value !== undefined) {
        if (value.token === token) {
          if (queued) this.unqueue(key, entry.member);
          return { acquired: true, fences: [value.fence], remaining: Math.ceil(value.expiresAt - now) };
        }
        if (queued) this.enqueue(key, entry);
        return {
          acquired: false,
          pttl: Math.ceil(value.expiresAt - now),
          fence: value.fence,
          rank: queued ? this.rank(key, entry.member) : undefined,
        };
      }
      // Free, but others may be queued (after an expiry): the oldest live waiter goes first.
      if (this.queues.has(key)) {
        if (queued) this.enqueue(key, entry);
        const h = this.handoff(key, '', now);
        if (h === 'handed') {
          const next = this.value(key, now)!;
          if (next.token === token) return { acquired: true, fences: [next.fence] };
          return {
            acquired: false,
            pttl: Math.ceil(next.expiresAt - now),
            fence: next.fence,
            rank: queued ? this.rank(key, entry.member) : undefined,
          };
        }
        if (h === 'woke' && queued) return { acquired: false, pttl: 0, rank: this.rank(key, entry.member) };
      }
      if (queued) this.unqueue(key, entry.member);
    } else {
      let pttl = -1;
      let busy = false;
      let ours = 0;
      let remaining = Infinity;
      let fence = 0;
      for (const key of keys) {
        const value = this.value(key, now);
        if (value === undefined) continue;
        if (value.token === token) {
          ours++;
          remaining = Math.min(remaining, value.expiresAt - now);
          fence = value.fence;
          continue;
        }
        busy = true;
        pttl = Math.max(pttl, Math.ceil(value.expiresAt - now));
        if (queued) this.enqueue(key, entry);
      }
      if (ours === keys.length) return { acquired: true, fences: keys.map(() => fence), remaining: Math.ceil(remaining) };
      if (busy) return { acquired: false, pttl };
    }
    const fence = ++this.fence;
    for (const key of keys) {
      this.locks.set(key, { token, fence, expiresAt: now + ttl });
      if (queued) this.unqueue(key, entry.member);
    }
    return { acquired: true, fences: keys.map(() => fence) };
  }

  async release(keys: readonly string[], token: string): Promise<ReleaseOutcome> {
    const now = monotonic();
    let outcome: ReleaseOutcome = 'released';
    for (const key of keys) {
      const value = this.value(key, now);
      if (value?.token === token) this.free(key, token, value.fence, now);
      else if (value?.previous !== token) outcome = 'not-ours';
    }
    return outcome;
  }

  async extend(keys: readonly string[], token: string, ttl: number): Promise<boolean> {
    const now = monotonic();
    const values = keys.map((key) => this.value(key, now));
    if (!values.every((v) => v?.token === token)) return false;
    for (const v of values) (v as Held).expiresAt = now + ttl;
    return true;
  }

  async inspect(key: string, token: string): Promise<InspectResult> {
    const now = monotonic();
    const value = this.value(key, now);
    if (value?.token !== token) return { held: false };
    return { held: true, fence: value.fence, pttl: Math.ceil(value.expiresAt - now) };
  }

  async isLocked(key: string): Promise<boolean> {
    return this.value(key, monotonic()) !== undefined;
  }

  async forceRelease(key: string): Promise<boolean> {
    const now = monotonic();
    const value = this.value(key, now);
    if (value === undefined) return false;
    this.free(key, '', value.fence, now);
    return true;
  }

  async leave(request: AcquireRequest): Promise<boolean> {
    const { keys, token, ttl, queueFor } = request;
    const member = queueMember(token, ttl, queueFor ?? 0, keys.length > 1);
    const now = monotonic();
    let got = false;
    for (const key of keys) {
      const rank = this.rank(key, member);
      this.unqueue(key, member);
      if (rank !== undefined && rank < 2) {
        const first = (this.queues.get(key) ?? []).slice(0, 2).map((e) => e.token);
        if (first.length > 0) this.notify(key, { type: 'next', tokens: first });
      }
      const value = this.value(key, now);
      if (value?.token === token) {
        got = true;
        this.free(key, token, value.fence, now);
      }
    }
    return got;
  }

  async putRecord(key: string, token: string, value: string, ttl: number): Promise<boolean> {
    const now = monotonic();
    if (this.value(key, now)?.token !== token) return false;
    // Expired records are dropped when read, and here in a sweep once the map has grown: bounded memory.
    if (this.records.size >= this.recordSweepAt) {
      for (const [k, r] of this.records) if (r.expiresAt <= now) this.records.delete(k);
      this.recordSweepAt = Math.max(1024, 2 * this.records.size);
    }
    this.records.set(key, { value, expiresAt: now + ttl });
    return true;
  }

  async getRecord(key: string): Promise<string | undefined> {
    const record = this.records.get(key);
    if (record && record.expiresAt <= monotonic()) this.records.delete(key);
    else if (record) return record.value;
    return undefined;
  }

  async watch(keys: readonly string[], token: string, listener: StoreListener): Promise<() => void> {
    this.watchers.add(keys, token, listener);
    return () => void this.watchers.remove(keys, token);
  }

  /**
   * Whether someone here waits on every key (it is contended): then an acquisition queues at once. An
   * uncontended key is tried once without listening, as on Redis (listening on every acquisition was
   * 2x its cost: bench scenario 8).
   */
  listening(keys: readonly string[]): boolean {
    return keys.every((key) => this.watchers.has(key));
  }

  /** Always up: the store is this process's memory. */
  async health(): Promise<StoreHealth> {
    return { up: true, details: { store: 'memory' } };
  }

  async close(): Promise<void> {
    this.watchers.wakeAll();
  }

  /** Number of keys held, for tests. */
  get size(): number {
    const now = monotonic();
    return [...this.locks.keys()].filter((key) => this.value(key, now) !== undefined).length;
  }

  private value(key: string, now: number): Held | undefined {
    const value = this.locks.get(key);
    if (value && value.expiresAt <= now) {
      this.locks.delete(key);
      return undefined;
    }
    return value;
  }

  /** Frees a held key: the next waiter gets it, else it is deleted. */
  private free(key: string, token: string, fence: number, now: number): void {
    if (this.handoff(key, token, now) !== 'handed') this.locks.delete(key);
  }

  /** Same rule as the Redis scripts' handoff(): the oldest live single-key waiter gets the lock. */
  private handoff(key: string, previous: string, now: number): 'handed' | 'woke' | 'empty' {
    const queue = this.queues.get(key);
    while (queue && queue.length > 0) {
      const next = queue.shift()!;
      if (queue.length === 0) this.queues.delete(key);
      if (next.until < now) continue;
      if (next.multi) {
        this.notify(key, { type: 'released' });
        return 'woke';
      }
      const fence = ++this.fence;
      this.locks.set(key, { token: next.token, fence, previous: previous || undefined, expiresAt: now + next.ttl });
      this.notify(key, { type: 'granted', token: next.token, fence, ttl: next.ttl, next: queue.slice(0, 2).map((e) => e.token) });
      return 'handed';
    }
    return 'empty';
  }

  private notify(key: string, event: StoreEvent): void {
    queueMicrotask(() => this.watchers.dispatch(key, event));
  }

  private entry(token: string, ttl: number, budget: number, multi: boolean, now: number): QueueEntry {
    return { member: queueMember(token, ttl, budget, multi), token, ttl, until: now + budget, multi };
  }

  private enqueue(key: string, entry: QueueEntry): void {
    const queue = this.queues.get(key) ?? [];
    if (!queue.some((e) => e.member === entry.member)) queue.push(entry);
    this.queues.set(key, queue);
  }

  private rank(key: string, member: string): number | undefined {
    const index = this.queues.get(key)?.findIndex((e) => e.member === member) ?? -1;
    return index >= 0 ? index : undefined;
  }

  private unqueue(key: string, member: string): void {
    const queue = this.queues.get(key);
    if (!queue) return;
    const index = queue.findIndex((e) => e.member === member);
    if (index >= 0) queue.splice(index, 1);
    if (queue.length === 0) this.queues.delete(key);
  }
}
