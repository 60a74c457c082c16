import { messages } from './messages.js';

/**
 * Base class of every error the library throws. `keys` are the lock keys the
 * operation was about (as the caller gave them, without the prefix).
 */
export class LockError extends Error {
  constructor(
    message: string,
    /** The lock keys involved, as given by the caller. */
    public readonly keys: readonly string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The lock could not be acquired within `wait` milliseconds. */
export class LockTimeoutError extends LockError {
  constructor(
    keys: readonly string[],
    /** How long the caller waited, in milliseconds. */
    public readonly waited: number,
    /** A hint, in milliseconds, of when trying again may succeed (the holder's remaining ttl when known). */
    public readonly retryAfter?: number,
  ) {
    super(messages.timeout(keys, waited), keys);
  }
}

/** The lock is no longer held: it expired, was force-released, or now belongs to another owner. */
export class LockLostError extends LockError {
  constructor(
    keys: readonly string[],
    /** Why, in words (e.g. `it is not held by this token`); also part of the message. */
    public readonly reason: string,
  ) {
    super(messages.lost(keys, reason), keys);
  }
}

/** A method decorated with `@WithLock` ran outside an initialised Nest application that imports LockModule. */
export class LockNotInitializedError extends LockError {}

/** The lock store (Redis) could not be reached or answered with an error. The original error is `cause`. */
export class LockUnavailableError extends LockError {}

/**
 * Sentinel/replicated setups with `replicaAck`: the lock was taken on the primary, but fewer replicas
 * than required acknowledged it in time, so it was given back (never a lock no replica holds). Transient:
 * attempts are retried within the wait; thrown when the wait is over.
 */
export class LockReplicaError extends LockUnavailableError {
  constructor(
    keys: readonly string[],
    /** Replicas that had to acknowledge the lock. */
    public readonly required: number,
    /** Replicas that did, in the last attempt. */
    public readonly acknowledged: number,
    /** How long the last attempt waited for them, ms. */
    public readonly timeout: number,
  ) {
    super(messages.replicaAck(keys, required, acknowledged, timeout), keys);
  }
}

/**
 * Quorum (Redlock) mode: fewer than a majority of the nodes took or answered the lock in time, so it
 * was rolled back. Transient: attempts are retried within the wait; thrown when the wait is over.
 */
export class LockQuorumError extends LockUnavailableError {
  constructor(
    keys: readonly string[],
    /** Nodes that had to take it: a majority. */
    public readonly quorum: number,
    /** Nodes in the quorum. */
    public readonly nodes: number,
    /** Nodes that answered the last attempt at all. */
    public readonly answered: number,
    options?: { cause?: unknown },
  ) {
    super(messages.quorum(keys, quorum, nodes, answered), keys, options);
  }
}

/** The lock service is shutting down: pending waits are rejected and no new lock is taken. */
export class LockShutdownError extends LockError {}

/** A key, ttl, wait or module option is invalid. Thrown before Redis is touched. */
export class LockArgumentError extends LockError {}

/**
 * Redis refused the operation for a reason that waiting cannot fix: a missing ACL permission
 * (`NOPERM`), a key of the wrong type or holding a value that is not a lock (`WRONGTYPE`, `FOREIGN`),
 * a wrong password (`AUTH`), a database index the server refuses (`DB`), a value out of range (`RANGE`).
 * Thrown at once, never after the whole wait. `code` names the kind; `cause` is the Redis error with
 * any password or AUTH argument removed.
 */
export class LockStoreError extends LockError {
  constructor(
    message: string,
    /** `NOPERM`, `WRONGTYPE`, `FOREIGN`, `AUTH`, `DB`, `RANGE`, `SCRIPT` or another Redis error code. */
    public readonly code: string,
    keys: readonly string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, keys, options);
  }
}

/** Base class of the errors of idempotent calls (`@Idempotent`, `IdempotencyService.run`). `keys` holds the idempotency key. */
export class IdempotencyError extends LockError {}

/**
 * A duplicate of an idempotent call arrived while the first was still running, and either did not wait
 * (`inFlight: 'reject'`) or waited its whole `wait` without the first finishing. Retry later (HTTP: 409).
 */
export class IdempotencyInFlightError extends IdempotencyError {
  constructor(
    key: string,
    /** How long this call waited for the first, ms (0 with `inFlight: 'reject'`). */
    public readonly waited: number,
    /** A hint, ms, of when the first call's lease runs out if it is not extended (when known). */
    public readonly retryAfter?: number,
  ) {
    super(messages.idempotencyInFlight(key, waited), [key]);
  }
}

/** An idempotency key was reused with different input (another fingerprint) than the call that stored its result (HTTP: 422). */
export class IdempotencyKeyReuseError extends IdempotencyError {
  constructor(key: string) {
    super(messages.idempotencyKeyReuse(key), [key]);
  }
}

/**
 * The result of an idempotent call cannot be stored as JSON and replayed as it is (a Date, Map, BigInt,
 * function, circular reference …): nothing was stored, so a retry runs the work again. `path` names the
 * offending part (`$.items[2].createdAt`).
 */
export class IdempotencyResultError extends IdempotencyError {
  constructor(
    key: string,
    /** Where in the result, e.g. `$.payment.createdAt`. */
    public readonly path: string,
    /** What it is, e.g. `a Date`. */
    public readonly found: string,
  ) {
    super(messages.idempotencyResult(key, path, found), [key]);
  }
}

/**
 * The replay of an error that the first call threw and that `storeErrors` chose to store: its `name`,
 * `message`, and (for an HTTP exception) `status` and `response`, as the first call had them.
 */
export class IdempotencyStoredError extends IdempotencyError {
  constructor(
    key: string,
    /** The stored error's class name. */
    public readonly originalName: string,
    message: string,
    /** The HTTP status of the stored error, when it had one. */
    public readonly status?: number,
    /** The HTTP exception's response body, when it had one. */
    public readonly response?: unknown,
  ) {
    super(message, [key]);
  }
}
