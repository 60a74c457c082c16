import { randomBytes } from 'node:crypto';

/** Length of every owner token: 16 random bytes in base64url. The Lua scripts rely on it being fixed. */
export const TOKEN_LENGTH = 22;

const TOKEN_BYTES = 16;
const POOL_BYTES = TOKEN_BYTES * 256;
let pool = Buffer.alloc(0);
let offset = 0;

/**
 * A new owner id: 128 random bits from the OS CSPRNG. Bytes are drawn 4 KiB at a time and each is
 * used once (as crypto.randomUUID() caches its entropy): one randomBytes() call per acquisition was
 * 8% of the CPU of an uncontended acquire/release loop. @internal
 */
export function newToken(): string {
  if (offset + TOKEN_BYTES > pool.length) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const token = pool.toString('base64url', offset, offset + TOKEN_BYTES);
  pool.fill(0, offset, offset + TOKEN_BYTES);
  offset += TOKEN_BYTES;
  return token;
}

/**
 * The queue entry of a waiter: `<token>|<ttl>|<budget>`, `~` in front for a multi-key watcher. The
 * budget (ms) is counted by the store's clock from when the entry joined. @internal
 */
export function queueMember(token: string, ttl: number, budget: number, multi: boolean): string {
  return `${multi ? '~' : ''}${token}|${multi ? 0 : ttl}|${budget}`;
}
