/**
 * Every user-facing message of the library, as functions, so wording stays
 * consistent and tests can assert on it.
 * @internal
 */
const show = (value: unknown): string => {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  try {
    return String(JSON.stringify(value) ?? value);
  } catch {
    return String(value);
  }
};

export const MAX_KEY_LENGTH = 1024;

export const messages = {
  keyNotString: (key: unknown) => `Lock key must be a string, got ${typeof key} (${show(key)}).`,
  keyEmpty: () => 'Lock key must not be empty.',
  keyTooLong: (length: number) => `Lock key is ${length} characters long; the limit is ${MAX_KEY_LENGTH}.`,
  keysEmpty: () => 'Lock key list must contain at least one key.',
  keyFnNotFunctionOrString: (key: unknown) =>
    `@WithLock() needs a key string or a key function as first argument, got ${typeof key} (${show(key)}).`,
  keyFnResult: (method: string, result: unknown) =>
    `The key function of @WithLock() on ${method} must return a non-empty string or array of strings, got ${show(result)}.`,
  ttlInvalid: (where: string, ttl: unknown) => `${where}: ttl must be a positive finite number of milliseconds, got ${show(ttl)}.`,
  waitInvalid: (where: string, wait: unknown) =>
    `${where}: wait must be a finite number of milliseconds >= 0, got ${show(wait)}.`,
  optionInvalid: (option: string, value: unknown, expected: string) =>
    `LockModule option "${option}" ${expected}, got ${show(value)}.`,
  redisUrlInvalid: (url: string, reason: string) =>
    `LockModule option "redis" is not a valid Redis URL (${show(url)}): ${reason}. Expected redis://[user:password@]host[:port][/db] or rediss://…`,
  storeInvalid: (store: unknown) =>
    `LockModule option "store" must be 'redis', 'memory' or a LockStore instance, got ${show(store)}.`,
  decoratorOptionInvalid: (option: string, value: unknown, expected: string) =>
    `@WithLock() option "${option}" ${expected}, got ${show(value)}.`,
  timeout: (keys: readonly string[], waited: number) =>
    `Could not acquire the lock on ${keys.map((k) => show(k)).join(', ')} within ${waited} ms.`,
  lost: (keys: readonly string[], reason: string) => `The lock on ${keys.map((k) => show(k)).join(', ')} was lost: ${reason}.`,
  notInitialized: (method: string) =>
    `@WithLock() on ${method} was called before its Nest application was initialised, or on an instance no Nest application with LockModule manages. ` +
    'Import LockModule.forRoot() in the application and call the method after app.init() (or app.listen()).',
  ambiguousApp: (method: string) =>
    `@WithLock() on ${method} was called on an instance that no Nest application created (e.g. request-scoped or new'ed by hand), ` +
    'and several applications with LockModule run in this process, so it cannot tell which one to use. Let Nest create the instance as a singleton provider.',
  routeLockOutsideHttp: (method: string) =>
    `@RouteLock() on ${method} was called outside an HTTP request handled by LockInterceptor; call the route over HTTP, or use @WithLock() for a key built from the arguments.`,
  unavailable: (operation: string, reason: string) => `Lock store unavailable during ${operation}: ${reason}.`,
  shutdown: (keys: readonly string[]) =>
    `The lock service shut down while waiting for the lock on ${keys.map((k) => show(k)).join(', ')}.`,
  closed: () => 'The lock service is shut down; no new locks can be taken.',
  restoreTokenInvalid: (token: unknown) => `restore() needs the token string of a lock, got ${show(token)}.`,
  requeueNeedsJob: (method: string) =>
    `@WithLock() on ${method} has onTimeout: 'requeue', but its first argument is not a BullMQ job (no moveToDelayed function).`,
} as const;
