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
  idempotencyInFlight: (key: string, waited: number) =>
    waited > 0
      ? `The idempotent call ${show(key)} is still running in another call after ${waited} ms of waiting for it; retry later.`
      : `The idempotent call ${show(key)} is already running in another call; retry later.`,
  idempotencyKeyReuse: (key: string) =>
    `The idempotency key ${show(key)} was already used with different input; use a new key for a different request.`,
  idempotencyResult: (key: string, path: string, found: string) =>
    `The result of the idempotent call ${show(key)} cannot be stored and replayed as JSON: ${path} is ${found}. Nothing was stored (a retry runs again); return plain data (e.g. an ISO string for a Date).`,
  listenerThrew: (event: string, error: unknown) =>
    `A listener of the lock event "${event}" threw (${error instanceof Error ? error.message : String(error)}); listeners must not throw. The lock operation went on.`,
  recordNotStored: (key: string, error: unknown) =>
    `The result of the idempotent call ${show(key)} ran but could not be stored (${error instanceof Error ? error.message : String(error)}): a retry will run it again.`,
  noRecords: () =>
    'This lock store keeps no idempotency records (a LockStore of your own without getRecord/putRecord): use the Redis or memory store.',
  // HTTP (@IdempotentRoute): problem details for clients, and errors for the route's developer.
  httpKeyMissing: () =>
    'This request needs an Idempotency-Key header: a new unique value (e.g. a UUID) for each operation, sent again unchanged when retrying it.',
  httpKeyInvalid: (problem: string) => `The Idempotency-Key header ${problem}.`,
  httpKeyReused: () =>
    'This Idempotency-Key was already used for a different request (another method, URL or body); use a new key for a new request.',
  httpInFlight: () => 'A request with this Idempotency-Key is still being processed; retry after Retry-After seconds.',
  httpNotStored: (path: string, found: string) =>
    `The request was processed, but its response cannot be stored for replay (${path} is ${found}); a retry with this Idempotency-Key would process it again.`,
  routeScopeReturned: (method: string, value: unknown) =>
    `@IdempotentRoute() on ${method}: scope must return the non-empty string the key belongs to (a tenant or user id), got ${showArg(value)}. ` +
    'Put an authentication guard before the route so every request has one.',
  routeResponseHandled: (method: string) =>
    `@IdempotentRoute() on ${method}: the handler injects the response with @Res() (or @Next()) and sends it itself, so the response cannot be stored and replayed. ` +
    'Use @Res({ passthrough: true }) and return the body.',
  routeNoLockModule: (method: string) =>
    `@IdempotentRoute() on ${method} found no LockService in its application: import LockModule.forRoot() (or forRootAsync()) in the application.`,
  routeForeignRecord: (key: string) =>
    `The idempotency record of ${show(key)} was not written by @IdempotentRoute() (an @Idempotent method or IdempotencyService.run() uses the same key?); it was left unchanged.`,
  replicaAck: (keys: readonly string[], required: number, acknowledged: number, timeout: number) =>
    `Lock ${keys.map((k) => show(k)).join(', ')} was given back: replicaAck requires ${required} replica acknowledgement${required === 1 ? '' : 's'} within ${timeout} ms, ${acknowledged} acknowledged.`,
  quorum: (keys: readonly string[], quorum: number, nodes: number, answered: number) =>
    `Lock ${keys.map((k) => show(k)).join(', ')} has no quorum: it needs ${quorum} of ${nodes} Redis nodes, ${answered} answered.`,
  keyNotString: (key: unknown) => `Lock key must be a string, got ${typeof key} (${show(key)}).`,
  keyEmpty: () => 'Lock key must not be empty.',
  keysEmpty: () => 'Lock key list must contain at least one key.',
  optionInvalid: (option: string, value: unknown, expected: string) => `LockModule option "${option}" ${expected}, got ${show(value)}.`,
  redisUrlInvalid: (url: string, reason: string) =>
    `LockModule option "redis" is not a valid Redis URL (${show(url)}): ${reason}. Expected redis://[user:password@]host[:port][/db] or rediss://…`,
  storeInvalid: (store: unknown) => `LockModule option "store" must be 'redis', 'memory' or a LockStore instance, got ${show(store)}.`,
  timeout: (keys: readonly string[], waited: number) =>
    `Could not acquire the lock on ${keys.map((k) => show(k)).join(', ')} within ${waited} ms.`,
  lost: (keys: readonly string[], reason: string) => `The lock on ${keys.map((k) => show(k)).join(', ')} was lost: ${reason}.`,
  // Contention log lines (LockClient's `warn`): the label first, for grepping.
  slowWait: (label: string | undefined, keys: readonly string[], waited: number, threshold: number) =>
    `${label ?? 'Lock'}: waited ${waited} ms for the lock on ${keys.map((k) => show(k)).join(', ')} (slowWaitMs: ${threshold}).`,
  waitTimedOut: (label: string | undefined, keys: readonly string[], waited: number) =>
    `${label ?? 'Lock'}: gave up on the lock on ${keys.map((k) => show(k)).join(', ')} after waiting ${waited} ms.`,
  lostWithLabel: (label: string, message: string) => `${label}: ${message}`,
  notInitialized: (method: string) =>
    `@WithLock() on ${method} was called before its Nest application was initialised, or on an instance no Nest application with LockModule manages. ` +
    'Import LockModule.forRoot() in the application and call the method after app.init() (or app.listen()).',
  ambiguousApp: (method: string) =>
    `@WithLock() on ${method} was called on an instance that no Nest application created (e.g. request-scoped or new'ed by hand), ` +
    'and several applications with LockModule run in this process, so it cannot tell which one to use. Let Nest create the instance as a singleton provider.',
  routeLockOutsideHttp: (method: string) =>
    `@RouteLock() on ${method} was called outside an HTTP request handled by LockInterceptor; call the route over HTTP, or use @WithLock() for a key built from the arguments.`,
  unavailable: (operation: string, reason: string) => `Lock store unavailable during ${operation}: ${reason}.`,
  shutdown: (keys: readonly string[]) => `The lock service shut down while waiting for the lock on ${keys.map((k) => show(k)).join(', ')}.`,
  closed: () => 'The lock service is shut down; no new locks can be taken.',
  requeueNeedsJob: (method: string) =>
    `@WithLock() on ${method} has onTimeout: 'requeue', but its first argument is not a BullMQ job (no moveToDelayed function).`,

  // Argument checks (utils/validate.ts and the decorators). `where` is the call: 'acquire()', '@WithLock()'.
  ttlOutOfRange: (where: string, name: string, value: unknown, min: number, max: number) =>
    `${where}: ${name} must be a positive finite number of milliseconds from ${min} to ${max}, got ${showArg(value)}` +
    (typeof value === 'number' && Math.ceil(value) < min && Math.ceil(value) > 0
      ? ` (shorter than ${min} ms, the lock would expire within the clock-drift allowance and one round trip).`
      : typeof value === 'number' && Number.isFinite(value) && value > max
        ? ` (longer than ${max} ms, the largest delay a Node timer can wait).`
        : '.'),
  waitOutOfRange: (where: string, name: string, value: unknown, max: number) =>
    `${where}: ${name} must be a finite number of milliseconds from 0 to ${max}, got ${showArg(value)}.`,
  argumentInvalid: (where: string, name: string, expected: string, value: unknown) =>
    `${where}: ${name} ${expected}, got ${showArg(value)}.`,
  optionsNotObject: (where: string, value: unknown) => `${where}: options must be an object (or left out), got ${showArg(value)}.`,
  optionUnknown: (where: string, name: string, suggestion: string | undefined, known: readonly string[]) =>
    `${where}: unknown option ${show(name)}` +
    (suggestion === undefined ? '.' : `; did you mean ${show(suggestion)}?`) +
    (known.length === 0 ? ` ${where} takes no options.` : ` Known options: ${known.join(', ')}.`),
  keyTooLongShown: (key: string) => `Lock key is ${key.length} characters long; the limit is ${MAX_KEY_LENGTH}: ${show(key)}.`,
  keyIllFormed: (key: string, index: number) =>
    `Lock key must be well-formed UTF-16, got ${show(key)} with a lone surrogate at index ${index}: ` +
    'Redis would receive it as U+FFFD, so different keys would share one lock.',
  keyLeadingBrace: (key: string) =>
    `Lock key must not start with "}", got ${show(key)}: the hash tag of its Redis name "<prefix>{<key>}" would be empty, ` +
    'and on Redis Cluster its lock, queue and channel would land in different slots.',
  keyPromise: () => 'Lock key must be a string or an array of strings, got a Promise: await it first (key functions must be synchronous).',
  keyFnPromise: (decorator: string, method: string) =>
    `The key function of ${decorator} on ${method} returned a Promise; key functions must be synchronous ` +
    '(build the key from the arguments, or await first and call LockService.using() yourself).',
  keyFnReturned: (decorator: string, method: string, result: unknown, problem: string) =>
    `The key function of ${decorator} on ${method} must return a non-empty string or array of strings, got ${showArg(result)}: ${problem}`,
  tokenInvalid: (where: string, token: unknown, length: number) =>
    `${where}: token must be the ${length}-character base64url token of a lock (A-Z, a-z, 0-9, _ and -), got ` +
    (typeof token === 'string' ? `${show(token)} (${token.length} characters).` : `${showArg(token)}.`),
  decoratorNotMethod: (decorator: string, member: string, what: string) => `${decorator} can only decorate a method; ${member} is ${what}.`,
  decoratorKeyInvalid: (decorator: string, key: unknown) =>
    `${decorator} needs a key string or a key function as first argument, got ${typeof key} (${showArg(key)}).`,
  routeLockExtraArgument: (value: unknown) =>
    `@RouteLock() takes (key, ttl?, wait?); options such as onTimeout belong to @WithLock(), got a fourth argument ${showArg(value)}.`,
  // Store failures (core/store-errors.ts, core/redis-access.ts). Every `reason` has been redacted.
  storeRefused: (operation: string, code: string, reason: string) =>
    `The lock store refused ${operation} (${code}): ${reason}. Not retried: waiting cannot fix it.`,
  storeInternal: (operation: string, reason: string) => `The lock store failed during ${operation} with an internal error: ${reason}.`,
  storeForeignValue: (operation: string, redisKey: string) =>
    `The Redis key ${show(redisKey)} holds a value that is not a lock of nestjs-redis-lock, ` +
    `so ${operation} refused to touch it. Another program uses this key: choose another keyPrefix, or delete the key if it is left over.`,
  storeWrongType: (operation: string, keys: readonly string[], reason: string) =>
    `A Redis key of the lock${keys.length ? ` on ${keys.map((k) => show(k)).join(', ')}` : ''} holds a value of another type (${reason}), ` +
    `so ${operation} was refused. Another program uses this key: choose another keyPrefix, or delete the key if it is left over.`,
  storeNoPermission: (operation: string, reason: string, inScript: boolean) =>
    `The Redis user may not do what ${operation} needs${inScript ? ' (in a lock script)' : ''}: ${reason}. ` +
    'Grant it in the Redis ACL of this user (see the README), or connect as another user.',
  storeAuthRefused: (operation: string, reason: string) =>
    `Redis refused the credentials during ${operation}: ${reason}. Check the user name and password of the LockModule "redis" option.`,
  storeDbRefused: (operation: string, reason: string) =>
    `Redis refused the database index during ${operation}: ${reason}. Check the /db of the URL or the "db" of the LockModule "redis" option.`,
  accessDenied: (needs: string, reason: string, grant: string) =>
    `The Redis user may not ${needs}, which LockModule needs (${reason}). Grant it, e.g. ACL SETUSER <user> ${grant}, or connect as another user.`,
  connectionNotReady: (where: string, ms: number) =>
    `connected to ${where}, but it did not become ready within ${ms} ms (no answer to the Redis handshake, or still loading its data)`,
  tlsNotCompleted: (where: string, reason: string) =>
    `TLS handshake with ${where} did not complete: ${reason} (is the server speaking TLS?)`,
  integrationNeedsLockModule: (integration: string) =>
    `${integration} found no LockService in this application: import LockModule.forRoot(...) (or forRootAsync) in the same application.`,
  integrationNeedsProvider: (integration: string, provider: string, module: string) =>
    `${integration} found no ${provider} in this application: import ${module} in the same application.`,
  metricTaken: (name: string) =>
    `A metric named ${show(name)} is already registered in this prom-client registry by something other than nestjs-redis-lock: ` +
    'pass another "prefix" (or "registry") to LockPrometheusModule.forRoot().',
  // Tenancy (core/tenancy.ts).
  tenantInvalid: (where: string, tenant: unknown, max: number) =>
    `${where} must be a tenant id: a non-empty, well-formed string of at most ${max} characters` +
    `${isPromise(tenant) ? ' (a resolver or tenant function must be synchronous)' : ''}, got ${typeof tenant} ${showArg(tenant)}.`,
  tenantRequired: (where: string) =>
    `${where} has no tenant, and LockModule's tenant option has required: true: the resolver returned none and the call passed no tenant ` +
    '(run it inside the tenant context, or pass { tenant }).',
  tenantWithoutTenancy: (where: string, tenant: unknown) =>
    `${where} was given tenant ${showArg(tenant)}, but tenancy is off: set LockModule's tenant option ` +
    '(a resolver, or { required, slot }) so that keys are namespaced per tenant.',
  keyTenantMark: (key: string) =>
    `Lock key ${show(key)} starts with "@", which marks a tenant's key: without a tenant it could reach a tenant's lock. ` +
    'Pass the tenant, or build the key with lockKey() (it encodes "@").',
  lockKeyEmpty: () => 'lockKey() needs at least one part, and not only empty strings.',
  lockKeyPart: (index: number, part: unknown) =>
    `lockKey(): part ${index} must be a well-formed string or a finite number, got ${typeof part} ${showArg(part)}.`,
  accessDb: (db: number, reason: string) =>
    `The Redis server refused database ${db} (${reason}). Without it every lock would silently be taken in database 0: ` +
    `use a database the server has (its "databases" setting), in the /db of the URL or the "db" option.`,
} as const;

function isPromise(value: unknown): boolean {
  return value instanceof Promise;
}

/** show(), plus bigint and symbol spelt as such, and any value cut to about 60 characters. */
function showArg(value: unknown): string {
  try {
    if (typeof value === 'bigint') return `${value}n`;
    if (typeof value === 'symbol') return value.toString();
    const text = show(value);
    return text.length > 64 ? `${text.slice(0, 60)}…` : text;
  } catch {
    return `a ${typeof value}`;
  }
}
