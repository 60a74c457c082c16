import { randomBytes } from 'node:crypto';

/** Length of every owner token: 16 random bytes in base64url. The Lua scripts rely on it being fixed. */
export const TOKEN_LENGTH = 22;

/** A new owner id: 128 random bits from the OS CSPRNG. @internal */
export function newToken(): string {
  return randomBytes(16).toString('base64url');
}

/** Lock values are `<token>:<fence>`; reads the fence back. @internal */
export function splitValue(value: string): { token: string; fence: number } {
  return { token: value.slice(0, TOKEN_LENGTH), fence: Number(value.slice(TOKEN_LENGTH + 1)) };
}

/** The queue entry of a waiter: `<token>|<ttl>|<until>`, `~` in front for a multi-key watcher. @internal */
export function queueMember(token: string, ttl: number, until: number, multi: boolean): string {
  return `${multi ? '~' : ''}${token}|${multi ? 0 : ttl}|${until}`;
}
