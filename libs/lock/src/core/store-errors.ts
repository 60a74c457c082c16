/**
 * What a failed store call means: a permanent refusal (LockStoreError, thrown at once) or a transient
 * failure (LockUnavailableError, retried by the engine within the wait), and copies of errors with
 * every secret removed. Framework-free; knows Redis error replies and ioredis error shapes, duck-typed.
 * @internal
 */
import { LockError, LockStoreError, LockUnavailableError } from './errors.js';
import { messages } from './messages.js';

/**
 * Redis error codes that waiting can fix: the server is loading its data set, running a slow script,
 * failing over, resharding, waiting for replicas, or retrying a failed snapshot.
 */
const TRANSIENT_CODES = new Set([
  'LOADING',
  'BUSY',
  'TRYAGAIN',
  'CLUSTERDOWN',
  'READONLY',
  'MASTERDOWN',
  'NOREPLICAS',
  'MISCONF',
  'MOVED',
  'ASK',
  // The script cache was flushed between EVALSHA and its EVAL fallback: the next attempt loads it again.
  'NOSCRIPT',
]);

/** Redis error codes that mean the credentials are wrong or missing. */
const AUTH_CODES = new Set(['WRONGPASS', 'NOAUTH']);

/** Plain JavaScript errors that are a bug in a store, not a Redis condition: retrying cannot help. */
const PROGRAMMING_ERRORS = new Set(['TypeError', 'ReferenceError', 'SyntaxError', 'RangeError']);

/** Where Redis 7 says a reply came from a script: " script: <sha>, on @user_script:1." */
const SCRIPT_SUFFIX = /\s+script: \S+, on @\S+?\.?$/;

const REDACTED = '***';

const messageOf = (error: unknown): string => {
  if (error instanceof Error) return error.message;
  if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  return String(error);
};

/** An error reply of the Redis server (ioredis ReplyError, or any client's error with that name). */
function isReplyError(error: unknown): error is Error {
  return error instanceof Error && (error.name === 'ReplyError' || error.constructor?.name === 'ReplyError');
}

/** The leading upper-case word of a Redis error reply, e.g. NOPERM, WRONGTYPE, ERR. */
function replyCode(message: string): string | undefined {
  return /^([A-Z][A-Z0-9_]+)(?:\s|$)/.exec(message)?.[1];
}

/** What kind of permanent refusal a Redis error reply is, by its code and wording. */
function permanentCode(message: string, inScript: boolean): string {
  const code = replyCode(message) ?? 'ERR';
  if (AUTH_CODES.has(code)) return 'AUTH';
  if (code !== 'ERR') return code;
  // Redis 7 words an ACL refusal inside a script as ERR: "The user executing the script can't run this command …".
  if (/user executing the script can't|no permissions to/i.test(message)) return 'NOPERM';
  if (/DB index is out of range|invalid DB index/i.test(message)) return 'DB';
  if (/invalid password|AUTH <password> called without|invalid username-password/i.test(message)) return 'AUTH';
  if (/out of range|invalid expire time|would overflow|is not a float|not an integer/i.test(message)) return 'RANGE';
  if (inScript || /user_script|Error compiling script|Error running script/i.test(message)) return 'SCRIPT';
  return 'ERR';
}

/** True for errors the engine may retry within the wait. */
export function isTransient(error: unknown): boolean {
  if (error instanceof LockUnavailableError) return true;
  if (error instanceof LockError) return false;
  if (isReplyError(error)) {
    const code = replyCode(messageOf(error));
    return code !== undefined && TRANSIENT_CODES.has(code);
  }
  // Everything else that Redis clients reject with is about the connection: refused, reset, DNS, TLS,
  // "Connection is closed", an aborted command, ioredis' MaxRetriesPerRequestError.
  return !(error instanceof Error && PROGRAMMING_ERRORS.has(error.name));
}

/**
 * Maps anything a store call rejected with to a LockError: LockStoreError (permanent) or LockUnavailableError (transient), message naming the operation and cause, cause redacted.
 * @param operation - what the engine was doing, e.g. "acquire", for the message.
 * @param error - what the store call rejected with. A LockError is returned unchanged.
 * @param keys - the lock keys involved, as the caller gave them.
 * @param lastError - the last error the connection reported (see {@link noAnswer}); added to the message of
 *   a transient failure that says nothing by itself (ioredis' MaxRetriesPerRequestError, "Connection is closed").
 */
export function toLockError(operation: string, error: unknown, keys: readonly string[] = [], lastError?: unknown): LockError {
  if (error instanceof LockError) return error;
  const cause = redact(error);
  // Redis ends some replies with a period; the messages add their own.
  const text = redact(messageOf(error)).replace(SCRIPT_SUFFIX, '').replace(/\.+$/, '');
  if (isTransient(error)) {
    // The connection was refused for good while setting up (e.g. a database index the server does not
    // have): that refusal, not "connection closed", is what the caller must see.
    if (lastError instanceof LockStoreError) return new LockStoreError(lastError.message, lastError.code, keys, { cause: lastError.cause });
    const last = lastError === undefined || lastError === error || isReplyError(error) ? '' : lastErrorText(lastError);
    // ioredis' MaxRetriesPerRequestError says only that it gave up; the connection error says why.
    const reason =
      error instanceof Error && error.name === 'MaxRetriesPerRequestError'
        ? `no connection${last ? ` (${last})` : ''}; the command was given up after ioredis' retries`
        : `${text}${last ? `; last connection error: ${last}` : ''}`;
    return new LockUnavailableError(messages.unavailable(operation, reason), keys, { cause });
  }
  if (!isReplyError(error)) return new LockStoreError(messages.storeInternal(operation, text), 'INTERNAL', keys, { cause });
  const inScript = SCRIPT_SUFFIX.test(messageOf(error)) || /executing the script/.test(text);
  const code = permanentCode(text, inScript);
  switch (code) {
    case 'FOREIGN': {
      // "FOREIGN <redis key> holds a value …" (the scripts' wording); a key may contain spaces.
      const redisKey = /^FOREIGN (.*?) holds a value/s.exec(text)?.[1] ?? /^FOREIGN (\S+)/.exec(text)?.[1] ?? '?';
      return new LockStoreError(messages.storeForeignValue(operation, redisKey), code, keys, { cause });
    }
    case 'WRONGTYPE':
      return new LockStoreError(messages.storeWrongType(operation, keys, text), code, keys, { cause });
    case 'NOPERM':
      return new LockStoreError(messages.storeNoPermission(operation, text, inScript), code, keys, { cause });
    case 'AUTH':
      return new LockStoreError(messages.storeAuthRefused(operation, text), code, keys, { cause });
    case 'DB':
      return new LockStoreError(messages.storeDbRefused(operation, text), code, keys, { cause });
    default:
      return new LockStoreError(messages.storeRefused(operation, code, text), code, keys, { cause });
  }
}

/** "<message>" of a connection error, with its code when the message does not show it (e.g. a TLS error). */
function lastErrorText(error: unknown): string {
  const text = redact(messageOf(error)).replace(/\.+$/, '');
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && !text.includes(code) ? `${text} (${code})` : text;
}

/**
 * The message for a call that got no answer in time, including the last connection error seen (redacted), if any.
 * @param operation - what the engine was doing, e.g. "acquire".
 * @param limitMs - how long it waited for the answer.
 * @param lastError - the last error the connection reported (connection refused, DNS, TLS, a refused
 *   handshake), or undefined when it reported none (e.g. a server that accepts and never answers).
 */
export function noAnswer(operation: string, limitMs: number, lastError?: unknown): LockUnavailableError {
  const last = lastError === undefined ? '' : `; last connection error: ${lastErrorText(lastError)}`;
  return new LockUnavailableError(
    messages.unavailable(operation, `no answer within ${limitMs} ms${last}`),
    [],
    lastError === undefined ? undefined : { cause: redact(lastError) },
  );
}

// ---------------------------------------------------------------- redaction

/** Values known to be secret (passwords the module was given), removed from any text by {@link redact}. */
const secrets = new Set<string>();
/** Shorter values are not searched for in text: a 3-letter password would blank out ordinary words. */
const MIN_SECRET_LENGTH = 6;

/**
 * Registers a value (a password, an ACL token) that {@link redact} removes from any text it sees, in
 * addition to what it recognises by shape (URL user info, AUTH/HELLO arguments).
 * @internal
 */
export function registerSecret(secret: unknown): void {
  if (typeof secret !== 'string' || secret.length < MIN_SECRET_LENGTH) return;
  secrets.add(secret);
  // As it appears in a URL, too.
  const encoded = encodeURIComponent(secret);
  if (encoded !== secret) secrets.add(encoded);
}

/** Query parameters of a URL that carry credentials (ioredis takes `?password=` as an option). */
const SECRET_PARAM = /([?&](?:password|pass|pwd|secret|token|auth)=)[^&#\s"']*/gi;
/** `scheme://userinfo@`: the user info ends at the last `@` before the host, so a password may contain `@`. */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#"'`]*)@/gi;

/** A whole string that is one URL: its user info runs to the last `@`, even past a raw `/`, `#` or `?` in a password. */
const WHOLE_URL = /^(\s*[a-z][a-z0-9+.-]*:\/\/)(\S*)@(\S*)$/is;

const userinfoRedacted = (scheme: string, userinfo: string): string => {
  const colon = userinfo.indexOf(':');
  // Without a colon ioredis takes the user info as a user name, but people do write redis://password@host.
  return colon === -1 ? `${scheme}${REDACTED}@` : `${scheme}${userinfo.slice(0, colon)}:${REDACTED}@`;
};

/** A URL (or any text containing URLs) with passwords and credential parameters replaced by `***`. */
function redactText(text: string): string {
  const whole = WHOLE_URL.exec(text);
  let out = whole
    ? `${userinfoRedacted(whole[1]!, whole[2]!)}${whole[3]!}`
    : text.replace(URL_USERINFO, (_match, scheme: string, userinfo: string) => userinfoRedacted(scheme, userinfo));
  out = out.replace(SECRET_PARAM, `$1${REDACTED}`);
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out;
}

/** Arguments of a Redis command with every credential replaced: AUTH, HELLO … AUTH, ACL SETUSER, CONFIG SET, MIGRATE. */
function redactArgs(name: string, args: readonly unknown[]): unknown[] {
  const command = name.toLowerCase();
  const text = (arg: unknown) => (typeof arg === 'string' ? redactText(arg) : Buffer.isBuffer(arg) ? redactText(arg.toString()) : arg);
  const upper = (arg: unknown) => String(arg).toUpperCase();
  if (command === 'auth') return args.length <= 1 ? args.map(() => REDACTED) : [text(args[0]), ...args.slice(1).map(() => REDACTED)];
  const out = args.map(text);
  if (command === 'hello' || command === 'migrate') {
    for (let i = 0; i < out.length; i++) {
      const word = upper(out[i]);
      if (word === 'AUTH' && command === 'hello') {
        if (i + 2 < out.length) out[i + 2] = REDACTED;
        else if (i + 1 < out.length) out[i + 1] = REDACTED;
      } else if (word === 'AUTH' && i + 1 < out.length) out[i + 1] = REDACTED;
      else if (word === 'AUTH2' && i + 2 < out.length) out[i + 2] = REDACTED;
    }
  } else if (command === 'acl') {
    // ACL SETUSER rules: >password, <password, #hash, !hash
    return out.map((arg, i) => (i >= 2 && typeof arg === 'string' && /^[<>#!]/.test(arg) ? REDACTED : arg));
  } else if (command === 'config' && upper(out[0]) === 'SET') {
    for (let i = 1; i + 1 < out.length; i += 2) if (/pass|auth|secret/i.test(String(out[i]))) out[i + 1] = REDACTED;
  }
  return out;
}

const SECRET_FIELD = /^(password|pass|pwd|secret|token|auth|sentinelPassword)$/i;
const MAX_DEPTH = 6;

function redactValue(value: unknown, depth: number, seen: Map<object, unknown>): unknown {
  if (typeof value === 'string') return redactText(value);
  if (typeof value !== 'object' || value === null) return value;
  if (seen.has(value)) return seen.get(value);
  if (depth > MAX_DEPTH) return '[redacted: too deep]';
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Error) return redactError(value, depth, seen);
  if (Array.isArray(value)) {
    const copy: unknown[] = [];
    seen.set(value, copy);
    for (const item of value) copy.push(redactValue(item, depth + 1, seen));
    return copy;
  }
  const proto = Object.getPrototypeOf(value) as object | null;
  if (proto !== Object.prototype && proto !== null) {
    // A client or connection hanging off an error would print its options, password included.
    const options = (value as { options?: unknown }).options;
    return typeof options === 'object' && options !== null ? `[${value.constructor?.name ?? 'object'}]` : value;
  }
  const copy: Record<string, unknown> = {};
  seen.set(value, copy);
  for (const [key, field] of Object.entries(value)) {
    copy[key] =
      SECRET_FIELD.test(key) && field !== undefined && field !== null && field !== '' ? REDACTED : redactValue(field, depth + 1, seen);
  }
  return copy;
}

/**
 * A copy of an error with the same prototype (so `instanceof` and util.inspect's class name still
 * work), message, stack and every own property redacted, `command.args` with credentials removed,
 * and `cause` / `errors` redacted the same way.
 */
function redactError(error: Error, depth: number, seen: Map<object, unknown>): Error {
  const copy = Object.create(Object.getPrototypeOf(error) as object) as Error;
  seen.set(error, copy);
  for (const key of Reflect.ownKeys(error)) {
    const descriptor = Object.getOwnPropertyDescriptor(error, key)!;
    if (!('value' in descriptor)) continue; // accessors are not copied: they could read the original
    let field: unknown = descriptor.value;
    if (key === 'command' && typeof field === 'object' && field !== null) {
      const { name, args } = field as { name?: unknown; args?: unknown };
      field = {
        ...(redactValue(field, depth + 1, seen) as object),
        ...(Array.isArray(args) ? { args: redactArgs(typeof name === 'string' ? name : '', args) } : {}),
      };
    } else {
      field = redactValue(field, depth + 1, seen);
    }
    Object.defineProperty(copy, key, { ...descriptor, value: field });
  }
  // An engine may keep `stack` as an accessor; the copy always gets a redacted string.
  if (!Object.prototype.hasOwnProperty.call(copy, 'stack') && typeof error.stack === 'string') {
    Object.defineProperty(copy, 'stack', { value: redactText(error.stack), writable: true, configurable: true, enumerable: false });
  }
  return copy;
}

/**
 * Removes passwords from URLs and AUTH/HELLO args from a string or error (returns a safe copy).
 *
 * Strings: URL user info becomes `user:***@`, credential query parameters `password=***`, and every
 * registered secret `***`. Errors: a copy as described above (also for errors nested as `cause`).
 * Plain objects and arrays: copies with fields named like a password replaced. Anything else is
 * returned as it is.
 */
export function redact<T>(value: T): T {
  return redactValue(value, 0, new Map()) as T;
}
