import type { ExecutionContext } from '@nestjs/common';
import { LockArgumentError } from '../core/errors.js';
import { messages } from '../core/messages.js';
import { validateBoolean } from '../core/validate.js';
import { checkIdempotencyOptions, type IdempotencyOptions } from './idempotency.js';

/**
 * A function of the HTTP request (Express `Request` or Fastify `FastifyRequest`) and its ExecutionContext.
 * @typeParam R what it returns.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the request object is whatever the platform (Express, Fastify) passes
export type IdempotentRequestFn<R> = (request: any, context: ExecutionContext) => R;

/**
 * Options of `@IdempotentRoute()`. Durations are ms. Everything is checked when the decorator is
 * applied (a `LockArgumentError` naming the option and the value).
 */
export interface IdempotentRouteOptions extends Omit<IdempotencyOptions, 'fingerprint' | 'tenant'> {
  /**
   * `true` (default): a request without an `Idempotency-Key` header gets `400` with a problem body.
   * `false`: it runs normally, without idempotency.
   */
  required?: boolean;
  /**
   * Whom a key belongs to: a function of the request returning the tenant or user id (a non-empty
   * string), e.g. `(req) => req.user.id`. Keys are kept per scope, so one client can never be replayed
   * another's response by sending the same key. Default: none — every client shares one key space, and
   * anyone who learns or guesses a key gets its stored response. Set it on every route that serves more
   * than one client.
   */
  scope?: IdempotentRequestFn<string>;
  /**
   * Response headers (case-insensitive names) stored with the first response and replayed, e.g.
   * `['location', 'content-type']`. Only headers set by the time the handler has returned (by
   * `@Header()`, middleware, a guard, an interceptor, or `res.header()` with `@Res({ passthrough: true })`)
   * are seen. `set-cookie`, `content-length`, `transfer-encoding`, `connection`, `keep-alive` and
   * `idempotent-replayed` are refused. Default: none.
   */
  replayHeaders?: readonly string[];
  /**
   * What identifies the request, so a key reused for another request gets `422` instead of the first
   * response. `true` (default): the method, the URL (path and query string, as received) and the body;
   * `false`: none (any request with the key gets the first response); a function: its result for the
   * request (any JSON value, hashed with SHA-256).
   */
  fingerprint?: boolean | IdempotentRequestFn<unknown>;
}

/** Option names of `@IdempotentRoute()`. */
export const IDEMPOTENT_ROUTE_OPTIONS = [
  'required',
  'ttl',
  'leaseTtl',
  'wait',
  'inFlight',
  'scope',
  'replayHeaders',
  'fingerprint',
  'storeErrors',
  'label',
] as const;

/** What `@IdempotentRoute` stores on a handler or controller (read by {@link IdempotencyInterceptor}), checked. */
export interface IdempotentRouteDefinition {
  /** Whether a request without the header gets 400 (true) or runs normally (false). */
  readonly required: boolean;
  /** How long the first response is kept, ms. */
  readonly ttl: number;
  /** The first request's lease, ms; unset: the module's ttl. */
  readonly leaseTtl?: number;
  /** How long a duplicate waits for the first request, ms; unset: the module's wait. */
  readonly wait?: number;
  /** A duplicate while the first request runs: wait for it, or `409` at once. */
  readonly inFlight: 'wait' | 'reject';
  /** Whom a key belongs to; unset: one key space for every client. */
  readonly scope?: IdempotentRequestFn<string>;
  /** Lower-case names of the response headers to store and replay. */
  readonly replayHeaders: readonly string[];
  /** `true`: method + URL + body; `false`: none; a function of the request. */
  readonly fingerprint: boolean | IdempotentRequestFn<unknown>;
  /** Errors of the handler to store and replay (with their status and body). */
  readonly storeErrors?: (error: unknown) => boolean;
  /** A label for events and metrics; unset: `Controller.method`. */
  readonly label?: string;
}

/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Headers a replay must never copy: cookies of the first response, framing that the server computes, the replay marker. */
const UNREPLAYABLE_HEADERS: Readonly<Record<string, string>> = {
  'set-cookie': 'a cookie of the first response must not be handed to whoever sends its key',
  'content-length': 'the server computes it for the replayed body',
  'transfer-encoding': 'the server chooses the framing of the replayed body',
  connection: 'it is a hop-by-hop header',
  'keep-alive': 'it is a hop-by-hop header',
  'idempotent-replayed': 'the interceptor sets it on every replay',
};

/**
 * Checks the options of `@IdempotentRoute()` at declaration.
 * @throws LockArgumentError naming the option and the value.
 * @internal
 */
export function checkIdempotentRouteOptions(where: string, options: unknown): IdempotentRouteDefinition {
  const checked = checkIdempotencyOptions(where, options, IDEMPOTENT_ROUTE_OPTIONS);
  const given = options as IdempotentRouteOptions | undefined;
  const required = validateBoolean(where, 'required', given?.required) ?? true;
  const scope: unknown = given?.scope;
  if (scope !== undefined && typeof scope !== 'function') {
    throw new LockArgumentError(
      messages.argumentInvalid(where, 'scope', 'must be a function of the request returning the tenant or user id', scope),
    );
  }
  const fingerprint = checked.fingerprint ?? true;
  if (typeof fingerprint !== 'boolean' && typeof fingerprint !== 'function') {
    throw new LockArgumentError(
      messages.argumentInvalid(where, 'fingerprint', 'must be true, false or a function of the request', fingerprint),
    );
  }
  return {
    required,
    ttl: checked.ttl,
    leaseTtl: checked.leaseTtl,
    wait: checked.wait,
    inFlight: checked.inFlight,
    scope: scope as IdempotentRequestFn<string> | undefined,
    replayHeaders: checkReplayHeaders(where, given?.replayHeaders),
    fingerprint: fingerprint as boolean | IdempotentRequestFn<unknown>,
    storeErrors: checked.storeErrors,
    label: checked.label,
  };
}

function checkReplayHeaders(where: string, value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value))
    throw new LockArgumentError(messages.argumentInvalid(where, 'replayHeaders', 'must be an array of header names', value));
  const names = new Set<string>();
  for (let i = 0; i < value.length; i++) {
    const name: unknown = value[i];
    if (typeof name !== 'string' || !HEADER_NAME.test(name)) {
      throw new LockArgumentError(messages.argumentInvalid(where, `replayHeaders[${i}]`, 'must be an HTTP header name', name));
    }
    const lower = name.toLowerCase();
    const refused = UNREPLAYABLE_HEADERS[lower];
    if (refused !== undefined) {
      throw new LockArgumentError(
        messages.argumentInvalid(where, `replayHeaders[${i}]`, `must not be ${JSON.stringify(lower)} (${refused})`, name),
      );
    }
    names.add(lower);
  }
  return [...names];
}
