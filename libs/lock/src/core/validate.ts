import { TOKEN_LENGTH } from './token.js';
import { LockArgumentError } from './errors.js';
import type { OnLockLost } from './types.js';
import { MAX_KEY_LENGTH, messages } from './messages.js';

/**
 * Shortest ttl, ms. A lock is trusted for its ttl minus the clock-drift allowance (1% + 2 ms) and the
 * acquire round trip; below 10 ms nothing usable would be left.
 */
export const MIN_TTL = 10;

/** Longest ttl, wait, maxHold or delay, ms: the largest delay Node timers handle (2^31 - 1, about 24.8 days). */
export const MAX_DURATION = 2_147_483_647;

/** Option names `acquire()` accepts. */
export const ACQUIRE_OPTIONS = ['ttl', 'wait', 'autoExtend', 'maxHold', 'label', 'tenant'] as const;
/** Option names `tryAcquire()` accepts (no `wait`: it makes one attempt). */
export const TRY_ACQUIRE_OPTIONS = ['ttl', 'autoExtend', 'maxHold', 'label', 'tenant'] as const;
/** Option names `using()` accepts. */
export const USING_OPTIONS = ['ttl', 'wait', 'autoExtend', 'maxHold', 'onLockLost', 'label', 'tenant'] as const;
/** Option names `restore()` accepts. */
export const RESTORE_OPTIONS = ['ttl', 'autoExtend', 'maxHold', 'tenant'] as const;
/** Option names `dispatchUnique()` accepts. */
export const DISPATCH_UNIQUE_OPTIONS = ['ttl', 'wait', 'tenant'] as const;
/** Option names `isLocked()` and `forceRelease()` accept. */
export const KEY_ONLY_OPTIONS = ['tenant'] as const;
/** Option names of the fourth argument of `@WithLock()`. */
export const WITH_LOCK_OPTIONS = ['onTimeout', 'requeueDelay', 'onLockLost', 'autoExtend', 'maxHold', 'label', 'tenant'] as const;
/** `@RouteLock()` takes no options object (key, ttl and wait are positional). */
export const ROUTE_LOCK_OPTIONS = [] as const;

/** Longest `label`, UTF-16 units. */
export const MAX_LABEL_LENGTH = 200;

/** The values `onLockLost` accepts. */
export const ON_LOCK_LOST_VALUES: readonly OnLockLost[] = ['continue', 'throw'];

const TOKEN_PATTERN = new RegExp(`^[A-Za-z0-9_-]{${TOKEN_LENGTH}}$`);
/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * A ttl (or another duration that must leave a usable lock, such as `maxHold`): a finite number that,
 * rounded up to whole ms, lies in MIN_TTL..MAX_DURATION.
 * @param where the call, for the message (`'acquire()'`, `'@WithLock()'`).
 * @param name the argument's name, for the message.
 * @returns whole milliseconds.
 * @throws LockArgumentError naming `where`, `name` and the value.
 * @internal
 */
export function validateTtl(where: string, ttl: unknown, name = 'ttl'): number {
  const ms = typeof ttl === 'number' ? Math.ceil(ttl) : Number.NaN;
  if (!(ms >= MIN_TTL && ms <= MAX_DURATION)) throw new LockArgumentError(messages.ttlOutOfRange(where, name, ttl, MIN_TTL, MAX_DURATION));
  return ms;
}

/**
 * A wait (or another delay that may be 0, such as `requeueDelay`): a finite number in 0..MAX_DURATION.
 * @returns whole milliseconds (rounded up).
 * @throws LockArgumentError naming `where`, `name` and the value.
 * @internal
 */
export function validateWait(where: string, wait: unknown, name = 'wait'): number {
  // `wait >= 0` before rounding: -0.5 is a mistake, not "no wait".
  if (typeof wait !== 'number' || !(wait >= 0 && Math.ceil(wait) <= MAX_DURATION)) {
    throw new LockArgumentError(messages.waitOutOfRange(where, name, wait, MAX_DURATION));
  }
  return Math.ceil(wait) + 0; // + 0 turns -0 into 0
}

/**
 * `true`, `false` or undefined (not given).
 * @throws LockArgumentError for anything else (`'no'`, `1`, `null`).
 * @internal
 */
export function validateBoolean(where: string, name: string, value: unknown): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value;
  throw new LockArgumentError(messages.argumentInvalid(where, name, 'must be true or false', value));
}

/**
 * A function.
 * @throws LockArgumentError otherwise.
 * @internal
 */
export function validateFunction(where: string, name: string, value: unknown): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') throw new LockArgumentError(messages.argumentInvalid(where, name, 'must be a function', value));
}

/**
 * `'continue'`, `'throw'` or undefined (not given).
 * @throws LockArgumentError otherwise.
 * @internal
 */
export function validateOnLockLost(where: string, value: unknown, name = 'onLockLost'): OnLockLost | undefined {
  if (value === undefined || ON_LOCK_LOST_VALUES.includes(value as OnLockLost)) return value as OnLockLost | undefined;
  throw new LockArgumentError(messages.argumentInvalid(where, name, "must be 'continue' or 'throw'", value));
}

/**
 * A `label` (for events and metrics): a string of 1 to MAX_LABEL_LENGTH characters, or undefined (not given).
 * @throws LockArgumentError otherwise.
 * @internal
 */
export function validateLabel(where: string, value: unknown, name = 'label'): string | undefined {
  if (value === undefined || (typeof value === 'string' && value.length > 0 && value.length <= MAX_LABEL_LENGTH)) return value;
  throw new LockArgumentError(messages.argumentInvalid(where, name, `must be a string of 1 to ${MAX_LABEL_LENGTH} characters`, value));
}

/**
 * An options argument: undefined becomes `{}`; it must otherwise be a plain object (not null, not an
 * array) whose own names are all in `known`. Only the names are checked here; the values are the
 * caller's to check (see {@link validateLockOptions}).
 * @throws LockArgumentError for a non-object, or naming the first unknown option and the closest known one.
 * @internal
 */
export function validateOptions<T extends object>(where: string, options: unknown, known: readonly string[]): Partial<T> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new LockArgumentError(messages.optionsNotObject(where, options));
  }
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) throw new LockArgumentError(messages.optionUnknown(where, name, closest(name, known), known));
  }
  return options as Partial<T>;
}

/** The lock options every call site shares, checked. @internal */
export interface CheckedLockOptions {
  ttl?: number;
  wait?: number;
  autoExtend?: boolean;
  maxHold?: number;
  onLockLost?: OnLockLost;
  label?: string;
}

/**
 * {@link validateOptions} plus the values of `ttl`, `wait`, `autoExtend`, `maxHold`, `onLockLost` and `label`
 * (those of them `known` allows). Undefined values mean "not given" and stay undefined.
 * @example `const { ttl = this.options.ttl, wait = this.options.wait } = validateLockOptions('acquire()', options, ACQUIRE_OPTIONS);`
 * @throws LockArgumentError for the first bad name or value.
 * @internal
 */
export function validateLockOptions(where: string, options: unknown, known: readonly string[]): CheckedLockOptions {
  const given = validateOptions<CheckedLockOptions>(where, options, known);
  const checked: CheckedLockOptions = {};
  if (given.ttl !== undefined) checked.ttl = validateTtl(where, given.ttl);
  if (given.wait !== undefined) checked.wait = validateWait(where, given.wait);
  if (given.autoExtend !== undefined) checked.autoExtend = validateBoolean(where, 'autoExtend', given.autoExtend);
  if (given.maxHold !== undefined) checked.maxHold = validateTtl(where, given.maxHold, 'maxHold');
  if (given.onLockLost !== undefined) checked.onLockLost = validateOnLockLost(where, given.onLockLost);
  if (given.label !== undefined) checked.label = validateLabel(where, given.label);
  return checked;
}

/**
 * Checks one key: a non-empty string of at most MAX_KEY_LENGTH UTF-16 units, well-formed (a lone
 * surrogate is sent to Redis as U+FFFD, so different keys would share one lock), not starting with `}`
 * (the lock's Redis name `<prefix>{<key>}` would then have an empty hash tag `{}`, and Redis Cluster
 * would hash each whole name: the lock, its queue and its channel would land in different slots).
 * @throws LockArgumentError naming the problem and the key (truncated).
 * @internal
 */
export function validateKey(key: unknown): string {
  if (typeof key !== 'string') throw new LockArgumentError(messages.keyNotString(key));
  if (key.length === 0) throw new LockArgumentError(messages.keyEmpty());
  if (key.length > MAX_KEY_LENGTH) throw new LockArgumentError(messages.keyTooLongShown(key), [key.slice(0, 64)]);
  if (!isWellFormed(key)) throw new LockArgumentError(messages.keyIllFormed(key, key.search(LONE_SURROGATE)));
  if (key.charCodeAt(0) === 0x7d /* } */) throw new LockArgumentError(messages.keyLeadingBrace(key), [key]);
  return key;
}

/**
 * Normalises a key or key list: validated, duplicates dropped, order kept.
 * @throws LockArgumentError for an empty list, a bad key, or a Promise (key functions must be synchronous).
 * @internal
 */
export function normalizeKeys(input: unknown): string[] {
  if (typeof input === 'string') return [validateKey(input)];
  if (isThenable(input)) {
    // The Promise is refused and never awaited: keep a rejection of it from crashing the process.
    if (input instanceof Promise) input.catch(() => undefined);
    throw new LockArgumentError(messages.keyPromise());
  }
  if (!Array.isArray(input)) return [validateKey(input)];
  if (input.length === 0) throw new LockArgumentError(messages.keysEmpty());
  const keys = new Set<string>();
  // An index loop, not map(): map() skips the holes of a sparse array, which would then reach Redis as undefined.
  for (let i = 0; i < input.length; i++) keys.add(validateKey(input[i]));
  return [...keys];
}

/**
 * An owner token as `newToken()` makes them: exactly TOKEN_LENGTH characters of base64url.
 * @throws LockArgumentError otherwise; the message shows at most 60 characters of the value.
 * @internal
 */
export function validateToken(where: string, token: unknown): string {
  if (typeof token !== 'string' || !TOKEN_PATTERN.test(token))
    throw new LockArgumentError(messages.tokenInvalid(where, token, TOKEN_LENGTH));
  return token;
}

/** True for a Promise or any object with a `then` method. @internal */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function'
  );
}

function isWellFormed(text: string): boolean {
  // String.prototype.isWellFormed is ES2024 (Node 20+); the regex covers older runtimes.
  const native = (text as { isWellFormed?: () => boolean }).isWellFormed;
  return typeof native === 'function' ? native.call(text) : !LONE_SURROGATE.test(text);
}

/** The known name closest to a misspelt one (case, one or two edits, a swap), for "did you mean". */
function closest(name: string, known: readonly string[]): string | undefined {
  if (name.length > 64) return undefined;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    const limit = Math.max(1, Math.floor(Math.max(name.length, candidate.length) / 3));
    if (distance <= limit && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}
