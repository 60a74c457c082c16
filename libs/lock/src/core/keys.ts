/**
 * The Redis key layout. Every key and channel that belongs to one lock key shares the hash tag
 * `{<key>}`, so one script may touch them all on Redis Cluster:
 *
 *   <prefix>{<key>}      the lock: "<token>:<fencing token>" with a PX ttl
 *   <prefix>{<key>}:q    the waiters' FIFO queue (sorted set; gone when empty)
 *   <prefix>{<key>}:c    pub/sub channel: grants and releases
 *
 * There is no other key: fencing tokens come from the lock value and the server clock (scripts.ts).
 *
 * Since the tag is the text between the first `{` and the next `}`, and every name above starts
 * with `<prefix>{<key>`, they all hash alike whatever the key contains (the prefix has no braces).
 * @internal
 */
export class KeyLayout {
  constructor(readonly prefix: string) {}

  lock(key: string): string {
    return `${this.prefix}{${key}}`;
  }

  /** Always the lock key + ":q" (RedisLockStore builds it the same way on its hot path). */
  queue(key: string): string {
    return `${this.lock(key)}:q`;
  }

  /** Always the lock key + ":c": the scripts derive it the same way. */
  channel(key: string): string {
    return `${this.lock(key)}:c`;
  }

  /** The lock key a channel belongs to, or undefined for a foreign channel. */
  keyOfChannel(channel: string): string | undefined {
    const head = `${this.prefix}{`;
    if (!channel.startsWith(head) || !channel.endsWith('}:c')) return undefined;
    return channel.slice(head.length, -3);
  }
}
