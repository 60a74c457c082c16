import type { StoreEvent, StoreListener } from './store.js';

interface Watcher {
  readonly token: string;
  readonly multi: boolean;
  readonly listener: StoreListener;
}

/**
 * Routes store notifications to the waiters of this process, for any store: a grant goes to the
 * one waiter whose token it names; a release wakes every multi-key watcher of the key and only the
 * oldest single-key waiter (no thundering herd: the others stay queued in the store).
 * @internal
 */
export class WatcherRegistry {
  private readonly byKey = new Map<string, Map<string, Watcher>>();

  /** Registers; returns the keys that had no watcher before. */
  add(keys: readonly string[], token: string, listener: StoreListener): string[] {
    const watcher: Watcher = { token, multi: keys.length > 1, listener };
    const fresh: string[] = [];
    for (const key of keys) {
      let watchers = this.byKey.get(key);
      if (!watchers) {
        watchers = new Map();
        this.byKey.set(key, watchers);
        fresh.push(key);
      }
      watchers.set(token, watcher);
    }
    return fresh;
  }

  /** Unregisters; returns the keys left without a watcher. */
  remove(keys: readonly string[], token: string): string[] {
    const emptied: string[] = [];
    for (const key of keys) {
      const watchers = this.byKey.get(key);
      if (!watchers) continue;
      watchers.delete(token);
      if (watchers.size === 0) {
        this.byKey.delete(key);
        emptied.push(key);
      }
    }
    return emptied;
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  dispatch(key: string, event: StoreEvent): void {
    const watchers = this.byKey.get(key);
    if (!watchers) return;
    if (event.type === 'granted' || event.type === 'next') {
      const next = event.type === 'granted' ? (event.next ?? []) : event.tokens;
      if (event.type === 'granted') {
        // The other single-key waiters of this process learn when the new holder's ttl would run out.
        for (const watcher of watchers.values()) {
          if (watcher.token === event.token) watcher.listener(event);
          else if (!watcher.multi && event.ttl !== undefined && !next.includes(watcher.token))
            watcher.listener({ type: 'handed', ttl: event.ttl });
        }
      }
      for (const token of next) watchers.get(token)?.listener({ type: 'next', tokens: [token] });
      return;
    }
    let wokeSingle = false;
    for (const watcher of [...watchers.values()]) {
      if (watcher.multi) watcher.listener(event);
      else if (!wokeSingle) {
        wokeSingle = true;
        watcher.listener(event);
      }
    }
  }

  /** Wakes every watcher (used on shutdown and on a reconnect, when messages may have been lost). */
  wakeAll(): void {
    for (const watchers of this.byKey.values()) for (const w of watchers.values()) w.listener({ type: 'released' });
  }
}

/**
 * Parses a pub/sub message of the Redis scripts: `r` (released), `g|<token>|<fence>|<ttl>|<next>|<next>`
 * (granted; the two waiters behind it) or `n|<token>|<token>` (these are now first in line). @internal
 */
export function parseMessage(message: string): StoreEvent | undefined {
  if (message === 'r') return { type: 'released' };
  const parts = message.split('|');
  if (parts[0] === 'g' && parts.length === 6) {
    return {
      type: 'granted',
      token: parts[1]!,
      fence: Number(parts[2]),
      ttl: Number(parts[3]),
      next: parts.slice(4).filter((t) => t !== ''),
    };
  }
  if (parts[0] === 'n' && parts.length === 3) return { type: 'next', tokens: parts.slice(1).filter((t) => t !== '') };
  return undefined;
}
