import type { AcquireRequest, AcquireResult, InspectResult, LockStore, StoreListener } from './store.js';
import { queueMember, splitValue } from './token.js';
import { WatcherRegistry } from './watchers.js';

interface Entry {
  value: string;
  expiresAt: number;
}

interface QueueEntry {
  readonly member: string;
  readonly token: string;
  readonly ttl: number;
  readonly until: number;
  readonly multi: boolean;
}

/**
 * A store inside one process with the same semantics as the Redis store (atomic all-or-nothing
 * acquire, owner-checked release and extend, expiry, FIFO hand-off, fencing tokens).
 * For unit tests and single-process development: it does not lock across processes.
 */
export class MemoryLockStore implements LockStore {
  private readonly locks = new Map<string, Entry>();
  private readonly queues = new Map<string, QueueEntry[]>();
  private readonly watchers = new WatcherRegistry();
  private fence = 0;

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const { keys, token, ttl, queueUntil } = request;
    const now = Date.now();
    const queued = queueUntil !== undefined;
    const entry = this.entry(token, ttl, queueUntil ?? 0, keys.length > 1);
    if (keys.length === 1) {
      const key = keys[0]!;
      const held = this.live(key, now);
      if (held) {
        if (held.value.startsWith(token)) {
          if (queued) this.unqueue(key, entry.member);
          return { acquired: true, fences: [splitValue(held.value).fence], remaining: held.expiresAt - now };
        }
        if (queued) this.enqueue(key, entry);
        return { acquired: false, pttl: held.expiresAt - now };
      }
      if (queued) this.enqueue(key, entry);
      // Free: queued waiters (the lock expired under them) go first, as in the Redis scripts.
      if (this.queues.has(key) && this.handoff(key, now)) {
        const next = this.live(key, now)!;
        if (next.value.startsWith(token)) return { acquired: true, fences: [splitValue(next.value).fence] };
        return { acquired: false, pttl: next.expiresAt - now };
      }
      if (queued) this.unqueue(key, entry.member);
    } else {
      let pttl = -1;
      for (const key of keys) {
        const held = this.live(key, now);
        if (!held) continue;
        pttl = Math.max(pttl, held.expiresAt - now);
        if (queued) this.enqueue(key, entry);
      }
      if (pttl >= 0) return { acquired: false, pttl };
    }
    const fence = ++this.fence;
    for (const key of keys) {
      this.locks.set(key, { value: `${token}:${fence}`, expiresAt: now + ttl });
      if (queued) this.unqueue(key, entry.member);
    }
    return { acquired: true, fences: keys.map(() => fence) };
  }

  async release(keys: readonly string[], token: string): Promise<boolean> {
    const now = Date.now();
    let all = true;
    for (const key of keys) {
      if (this.live(key, now)?.value.startsWith(token)) this.freeAndHandoff(key, now);
      else all = false;
    }
    return all;
  }

  async extend(keys: readonly string[], token: string, ttl: number): Promise<boolean> {
    const now = Date.now();
    const entries = keys.map((key) => this.live(key, now));
    if (!entries.every((e) => e?.value.startsWith(token))) return false;
    for (const e of entries) e!.expiresAt = now + ttl;
    return true;
  }

  async inspect(key: string, token: string): Promise<InspectResult> {
    const now = Date.now();
    const held = this.live(key, now);
    if (!held?.value.startsWith(token)) return { held: false };
    return { held: true, fence: splitValue(held.value).fence, pttl: held.expiresAt - now };
  }

  async isLocked(key: string): Promise<boolean> {
    return this.live(key, Date.now()) !== undefined;
  }

  async forceRelease(key: string): Promise<boolean> {
    const now = Date.now();
    if (!this.live(key, now)) return false;
    this.freeAndHandoff(key, now);
    return true;
  }

  async leave(request: AcquireRequest): Promise<boolean> {
    const { keys, token, ttl, queueUntil } = request;
    const member = queueMember(token, ttl, queueUntil ?? 0, keys.length > 1);
    const now = Date.now();
    let got = false;
    for (const key of keys) {
      this.unqueue(key, member);
      if (this.live(key, now)?.value.startsWith(token)) {
        got = true;
        this.freeAndHandoff(key, now);
      }
    }
    return got;
  }

  async watch(keys: readonly string[], token: string, listener: StoreListener): Promise<() => void> {
    this.watchers.add(keys, token, listener);
    return () => void this.watchers.remove(keys, token);
  }

  listening(): boolean {
    return true;
  }

  async close(): Promise<void> {
    this.watchers.wakeAll();
  }

  /** Number of keys held, for tests. */
  get size(): number {
    const now = Date.now();
    return [...this.locks.keys()].filter((key) => this.live(key, now)).length;
  }

  private live(key: string, now: number): Entry | undefined {
    const entry = this.locks.get(key);
    if (entry && entry.expiresAt <= now) {
      this.locks.delete(key);
      return undefined;
    }
    return entry;
  }

  private freeAndHandoff(key: string, now: number): void {
    if (!this.handoff(key, now)) this.locks.delete(key);
  }

  /** Same rule as the Redis scripts' handoff(): the oldest live single-key waiter gets the lock. */
  private handoff(key: string, now: number): boolean {
    const queue = this.queues.get(key);
    while (queue && queue.length > 0) {
      const next = queue.shift()!;
      if (queue.length === 0) this.queues.delete(key);
      if (next.until < now) continue;
      if (next.multi) {
        this.notify(key, { type: 'released' });
        return false;
      }
      const fence = ++this.fence;
      this.locks.set(key, { value: `${next.token}:${fence}`, expiresAt: now + next.ttl });
      this.notify(key, { type: 'granted', token: next.token, fence, grantedAt: now });
      return true;
    }
    return false;
  }

  private notify(key: string, event: Parameters<StoreListener>[0]): void {
    queueMicrotask(() => this.watchers.dispatch(key, event));
  }

  private entry(token: string, ttl: number, until: number, multi: boolean): QueueEntry {
    return { member: queueMember(token, ttl, until, multi), token, ttl, until, multi };
  }

  private enqueue(key: string, entry: QueueEntry): void {
    const queue = this.queues.get(key) ?? [];
    if (!queue.some((e) => e.member === entry.member)) queue.push(entry);
    this.queues.set(key, queue);
  }

  private unqueue(key: string, member: string): void {
    const queue = this.queues.get(key);
    if (!queue) return;
    const index = queue.findIndex((e) => e.member === member);
    if (index >= 0) queue.splice(index, 1);
    if (queue.length === 0) this.queues.delete(key);
  }
}
