import { createHash } from 'node:crypto';
import { monotonic } from '../core/clock.js';
import {
  IdempotencyInFlightError,
  IdempotencyKeyReuseError,
  IdempotencyResultError,
  IdempotencyStoredError,
  LockArgumentError,
  LockStoreError,
  LockTimeoutError,
} from '../core/errors.js';
import type { LockClient, LockEvents } from '../core/lock-client.js';
import { MAX_KEY_LENGTH, messages } from '../core/messages.js';
import { validateFunction, validateKey, validateOptions, validateTtl, validateWait } from '../core/validate.js';

/** Options of an idempotent call: `IdempotencyService.run()` and `@Idempotent`. Durations are ms. */
export interface IdempotencyOptions {
  /** How long the stored result is kept and replayed: 10 ms to 2^31-1 ms. Default 24 h. */
  ttl?: number;
  /**
   * The lease of the first call while it runs (a lock, extended by a heartbeat): if that call's process
   * dies, a retry may run once the lease expires. Default: the module's `ttl`.
   */
  leaseTtl?: number;
  /** How long a duplicate waits for a first call that is still running (woken when it finishes). Default: the module's `wait`. */
  wait?: number;
  /**
   * A duplicate that arrives while the first call runs: `'wait'` (default) for it and return the same
   * result, or `'reject'` at once with {@link IdempotencyInFlightError}.
   */
  inFlight?: 'wait' | 'reject';
  /**
   * What identifies the input (any JSON value, hashed): a later call with the same key and another
   * fingerprint is refused with {@link IdempotencyKeyReuseError} instead of getting the first result.
   */
  fingerprint?: unknown;
  /**
   * Errors of the work to store and replay (as {@link IdempotencyStoredError}) instead of letting a retry
   * run again. Default: none, every error lets a retry run.
   */
  storeErrors?: (error: unknown) => boolean;
  /** A label for events and metrics (bounded: a method name, not a key). Default: none (`@Idempotent`: `Class.method`). */
  label?: string;
  /**
   * The tenant the key belongs to (docs/tenancy.md): its lease and stored result are namespaced under
   * it, so another tenant's call with the same key never gets this result. Default: the module's tenant
   * resolver; `null`: no tenant.
   */
  tenant?: string | null;
}

/** Option names of `IdempotencyService.run()`. */
export const IDEMPOTENCY_OPTIONS = ['ttl', 'leaseTtl', 'wait', 'inFlight', 'fingerprint', 'storeErrors', 'label', 'tenant'] as const;

/** Default time a result is kept: 24 h. */
export const DEFAULT_IDEMPOTENCY_TTL = 24 * 60 * 60 * 1000;

/**
 * The lock keys of idempotent calls: their own namespace, so an idempotency key never shares a lease
 * with a lock of the same name.
 */
export const NAMESPACE = 'idempotency:';

/**
 * The namespace of HTTP requests' leases (`@IdempotentRoute`): apart from the services' one, so that no
 * key a service builds (from a webhook's event id, say) can reach a stored HTTP response. The two differ
 * in their 12th character, so no key in one equals a key in the other. @internal
 */
export const HTTP_NAMESPACE = 'idempotency-';

/** Longest idempotency key: a lock key's limit less the namespace. */
const MAX_IDEMPOTENCY_KEY = MAX_KEY_LENGTH - NAMESPACE.length;

/** The options, checked, with the fingerprint hashed. @internal */
export interface CheckedIdempotencyOptions {
  readonly ttl: number;
  readonly leaseTtl?: number;
  readonly wait?: number;
  readonly inFlight: 'wait' | 'reject';
  readonly fingerprint?: string;
  readonly storeErrors?: (error: unknown) => boolean;
  readonly label?: string;
  /** The call's tenant as given (checked by the engine's tenancy); undefined: the resolver's. */
  readonly tenant?: unknown;
}

/**
 * Checks idempotency options (everything but the fingerprint, which is per call) at declaration or call.
 * @throws LockArgumentError naming the option and its value.
 * @internal
 */
export function checkIdempotencyOptions(
  where: string,
  options: unknown,
  known: readonly string[] = IDEMPOTENCY_OPTIONS,
): Omit<CheckedIdempotencyOptions, 'fingerprint'> & { fingerprint?: unknown } {
  const given = validateOptions<IdempotencyOptions>(where, options, known);
  const { inFlight = 'wait', storeErrors, label } = given;
  if (inFlight !== 'wait' && inFlight !== 'reject') {
    throw new LockArgumentError(messages.argumentInvalid(where, 'inFlight', "must be 'wait' or 'reject'", inFlight));
  }
  if (storeErrors !== undefined) validateFunction(where, 'storeErrors', storeErrors);
  if (label !== undefined && (typeof label !== 'string' || label.length === 0 || label.length > 200)) {
    throw new LockArgumentError(messages.argumentInvalid(where, 'label', 'must be a string of 1 to 200 characters', label));
  }
  return {
    ttl: given.ttl === undefined ? DEFAULT_IDEMPOTENCY_TTL : validateTtl(where, given.ttl),
    leaseTtl: given.leaseTtl === undefined ? undefined : validateTtl(where, given.leaseTtl, 'leaseTtl'),
    wait: given.wait === undefined ? undefined : validateWait(where, given.wait),
    inFlight,
    storeErrors,
    label,
    fingerprint: given.fingerprint,
    ...(given.tenant === undefined ? {} : { tenant: given.tenant }),
  };
}

/**
 * A fingerprint of `value`: SHA-256 of its JSON with object keys sorted (so `{a, b}` and `{b, a}` agree).
 * @throws LockArgumentError when it is not JSON data.
 * @internal
 */
export function fingerprintOf(where: string, value: unknown): string {
  const problem = notJson(value, '$', []);
  if (problem)
    throw new LockArgumentError(messages.argumentInvalid(where, 'fingerprint', `must be JSON data (${problem[0]} is ${problem[1]})`, '…'));
  return createHash('sha256').update(stableJson(value)).digest('base64url');
}

function stableJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : stableJson(v))).join(',')}]`;
  const entries = Object.keys(value)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

/**
 * Where `value` is not data that JSON stores and gives back as it was: `[path, what]`, or undefined when
 * it is. Class instances pass (replayed as plain objects with their own enumerable properties); a
 * property that is `undefined` passes (it is left out); anything JSON would change or drop silently does not.
 * @internal
 */
export function notJson(value: unknown, path: string, ancestors: object[]): [string, string] | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : [path, String(value)];
    case 'undefined':
      return undefined;
    case 'bigint':
      return [path, 'a BigInt'];
    case 'function':
      return [path, 'a function'];
    case 'symbol':
      return [path, 'a symbol'];
  }
  if (value === null) return undefined;
  const object = value as object;
  if (ancestors.includes(object)) return [path, 'a circular reference'];
  if (Array.isArray(object)) {
    ancestors.push(object);
    for (let i = 0; i < object.length; i++) {
      const item: unknown = object[i];
      const problem =
        item === undefined
          ? ([`${path}[${i}]`, 'undefined (JSON makes it null)'] as [string, string])
          : notJson(item, `${path}[${i}]`, ancestors);
      if (problem) return problem;
    }
    ancestors.pop();
    return undefined;
  }
  const kind = lossyKind(object);
  if (kind) return [path, kind];
  ancestors.push(object);
  for (const key of Object.keys(object)) {
    const problem = notJson(
      (object as Record<string, unknown>)[key],
      /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`,
      ancestors,
    );
    if (problem) return problem;
  }
  ancestors.pop();
  return undefined;
}

/** Objects JSON turns into something else (a string, `{}`), named for the message. */
function lossyKind(object: object): string | undefined {
  if (object instanceof Date) return 'a Date';
  if (object instanceof Map) return 'a Map';
  if (object instanceof Set) return 'a Set';
  if (object instanceof RegExp) return 'a RegExp';
  if (object instanceof Promise) return 'a Promise (await it inside the method)';
  if (object instanceof Error) return `an Error (${object.name})`;
  if (ArrayBuffer.isView(object) || object instanceof ArrayBuffer) return `binary data (${object.constructor.name})`;
  if (typeof (object as { toJSON?: unknown }).toJSON === 'function')
    return `an object with its own toJSON (${object.constructor?.name ?? 'Object'})`;
  return undefined;
}

/** A stored record: the result (`r`, absent for undefined) or a stored error (`e`), with the input's fingerprint. */
interface StoredRecord {
  v: 1;
  fp?: string;
  r?: unknown;
  e?: { n: string; m: string; s?: number; b?: unknown };
}

/** What an idempotent call gave: the value, and whether it was replayed from a stored record. @internal */
export interface IdempotentOutcome<T> {
  readonly value: T;
  readonly replayed: boolean;
}

/**
 * The engine of idempotent calls, over a {@link LockClient}: a record per key holds the first call's
 * result; a lease (a lock with a heartbeat) marks the call in flight, so duplicates wait for it by
 * notification and a crashed call frees the key within the lease's ttl. @internal
 */
export class Idempotency {
  constructor(private readonly client: LockClient) {}

  /**
   * Runs `fn` once per `key`: the first call runs it and stores its result; duplicates get that result.
   * @throws IdempotencyInFlightError, IdempotencyKeyReuseError, IdempotencyResultError, IdempotencyStoredError,
   *   LockArgumentError (before Redis is touched), or what `fn` throws.
   */
  async execute<T>(
    where: string,
    key: string,
    options: Omit<CheckedIdempotencyOptions, 'fingerprint'> & { fingerprint?: string },
    fn: () => Promise<T> | T,
    /** The lease keys' namespace: {@link NAMESPACE} for calls of services, {@link HTTP_NAMESPACE} for requests. */
    namespace: typeof NAMESPACE | typeof HTTP_NAMESPACE = NAMESPACE,
  ): Promise<IdempotentOutcome<T>> {
    validateKey(key);
    if (key.length > MAX_IDEMPOTENCY_KEY) {
      throw new LockArgumentError(messages.argumentInvalid(where, 'key', `must be at most ${MAX_IDEMPOTENCY_KEY} characters`, key), [key]);
    }
    const leaseKey = namespace + key;
    validateFunction(where, 'fn', fn);
    const client = this.client;
    // Resolved once: the lease and every read of the record are namespaced under the same tenant.
    const tenant = client.tenantOf(where, options.tenant);
    const start = monotonic();
    const emit = (outcome: LockEvents['idempotent'][0]['outcome']) => {
      if (client.observed('idempotent')) {
        client.emit('idempotent', { key, label: options.label, outcome, duration: Math.round(monotonic() - start) });
      }
    };
    const notStored = (error: unknown): false => {
      client.options.warn?.(messages.recordNotStored(key, error));
      return false;
    };
    const replay = (text: string): IdempotentOutcome<T> => {
      const record = parseRecord(key, text);
      if (options.fingerprint !== undefined && record.fp !== undefined && record.fp !== options.fingerprint) {
        throw new IdempotencyKeyReuseError(key);
      }
      emit('replayed');
      if (record.e) throw new IdempotencyStoredError(key, record.e.n, record.e.m, record.e.s, record.e.b);
      return { value: record.r as T, replayed: true };
    };

    const stored = await client.getRecord(leaseKey, tenant);
    if (stored !== undefined) return replay(stored);
    let ran = false;
    try {
      return await client.using(
        leaseKey,
        {
          ttl: options.leaseTtl,
          wait: options.inFlight === 'reject' ? 0 : options.wait,
          autoExtend: true,
          onLockLost: 'continue',
          tenant,
          ...(options.label ? { label: leaseLabel(options.label) } : {}),
        },
        async (lease) => {
          // The first call finished while this one waited for the lease.
          const done = await client.getRecord(leaseKey, tenant);
          if (done !== undefined) return replay(done);
          ran = true;
          let value: T;
          try {
            value = await fn();
          } catch (error) {
            // A predicate that throws keeps nothing: the work's own error is what the caller must see.
            let keep: boolean;
            try {
              keep = options.storeErrors?.(error) === true;
            } catch {
              keep = false;
            }
            const kept = keep ? errorRecord(error, options.fingerprint) : undefined;
            if (kept && (await client.putRecord(lease, kept, options.ttl).catch((error: unknown) => notStored(error))))
              emit('error-stored');
            else emit('failed');
            throw error;
          }
          const problem = notJson(value, '$', []);
          if (problem) {
            emit('not-stored');
            throw new IdempotencyResultError(key, problem[0], problem[1]);
          }
          const record: StoredRecord = { v: 1, fp: options.fingerprint, r: value };
          // The work is done: a record that cannot be stored (the lease was lost, Redis went away) does not
          // undo it. The caller gets its result; a retry would run again.
          const kept = await client.putRecord(lease, JSON.stringify(record), options.ttl).catch((error: unknown) => notStored(error));
          emit(kept ? 'ran' : 'not-stored');
          return { value, replayed: false };
        },
      );
    } catch (error) {
      if (!ran && error instanceof LockTimeoutError) {
        // The first call may have finished just as this one gave up.
        const late = await client.getRecord(leaseKey, tenant).catch(() => undefined);
        if (late !== undefined) return replay(late);
        emit('in-flight');
        throw new IdempotencyInFlightError(key, options.inFlight === 'reject' ? 0 : error.waited, error.retryAfter);
      }
      throw error;
    }
  }
}

/**
 * The label of a lease's lock events: the call's label marked as a lease, so a method with both
 * `@Idempotent` and `@WithLock` (both labelled `Class.method`) does not count its lease as a second
 * acquisition of its lock in the metrics.
 */
function leaseLabel(label: string): string {
  return `idempotency:${label}`.slice(0, 200);
}

function parseRecord(key: string, text: string): StoredRecord {
  let record: StoredRecord | undefined;
  try {
    record = JSON.parse(text) as StoredRecord;
  } catch {
    record = undefined;
  }
  if (typeof record !== 'object' || record === null || record.v !== 1) {
    throw new LockStoreError(
      `The idempotency record of ${JSON.stringify(key)} holds data this library did not write; it was left unchanged.`,
      'FOREIGN',
      [key],
    );
  }
  return record;
}

/** The record of a stored error: its name and message, and an HTTP exception's status and response when JSON. */
function errorRecord(error: unknown, fingerprint: string | undefined): string {
  const e = error as { name?: unknown; message?: unknown; getStatus?: () => unknown; getResponse?: () => unknown } | null;
  // An error object of the user's: a getter that throws loses that part of the record, not the call's error.
  const read = (get: (() => unknown) | undefined): unknown => {
    try {
      return typeof get === 'function' ? get.call(e) : undefined;
    } catch {
      return undefined;
    }
  };
  const status = read(e?.getStatus);
  const response = read(e?.getResponse);
  const record: StoredRecord = {
    v: 1,
    fp: fingerprint,
    e: {
      n: typeof e?.name === 'string' ? e.name : 'Error',
      m: typeof e?.message === 'string' ? e.message : String(error),
      ...(typeof status === 'number' ? { s: status } : {}),
      ...(response !== undefined && notJson(response, '$', []) === undefined ? { b: response } : {}),
    },
  };
  return JSON.stringify(record);
}
