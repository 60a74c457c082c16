import { LockArgumentError } from '../errors/lock.errors.js';
import { MAX_KEY_LENGTH, messages } from '../lock.messages.js';

/** Checks one key; throws LockArgumentError naming the problem. @internal */
export function validateKey(key: unknown): string {
  if (typeof key !== 'string') throw new LockArgumentError(messages.keyNotString(key));
  if (key.length === 0) throw new LockArgumentError(messages.keyEmpty());
  if (key.length > MAX_KEY_LENGTH) throw new LockArgumentError(messages.keyTooLong(key.length), [key.slice(0, 64)]);
  return key;
}

/** Normalises a key or key list: validated, duplicates dropped, order kept. @internal */
export function normalizeKeys(input: unknown): string[] {
  if (typeof input === 'string') return [validateKey(input)];
  const list = Array.isArray(input) ? input : [input];
  if (list.length === 0) throw new LockArgumentError(messages.keysEmpty());
  return [...new Set(list.map(validateKey))];
}

/** A ttl: positive, finite; returned as whole ms (rounded up). @internal */
export function validateTtl(where: string, ttl: unknown): number {
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) throw new LockArgumentError(messages.ttlInvalid(where, ttl));
  return Math.ceil(ttl);
}

/** A wait: finite, >= 0; whole ms. @internal */
export function validateWait(where: string, wait: unknown): number {
  if (typeof wait !== 'number' || !Number.isFinite(wait) || wait < 0) throw new LockArgumentError(messages.waitInvalid(where, wait));
  return Math.ceil(wait);
}
