import {
  HttpException,
  HttpStatus,
  Inject,
  Injectable,
  StreamableFile,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { HttpAdapterHost, ModuleRef, Reflector } from '@nestjs/core';
import { catchError, defer, lastValueFrom, throwError, type Observable } from 'rxjs';
import {
  IdempotencyError,
  IdempotencyInFlightError,
  IdempotencyKeyReuseError,
  IdempotencyResultError,
  IdempotencyStoredError,
  LockArgumentError,
  LockNotInitializedError,
  LockStoreError,
} from '../core/errors.js';
import { messages } from '../core/messages.js';
import { LockService } from '../lock.service.js';
import { fingerprintOf, HTTP_NAMESPACE, type Idempotency } from './idempotency.js';
import { idempotencyOf } from './idempotency.service.js';
import type { IdempotentRouteDefinition } from './idempotent-route.options.js';

/** Metadata key set by `@IdempotentRoute` on a route handler or controller. @internal */
export const IDEMPOTENT_ROUTE_METADATA = 'nestjs_redis_lock:idempotent_route';

/** The request header carrying the key (IETF httpapi draft "The Idempotency-Key HTTP Header Field", Stripe). */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';

/** The response header marking a replayed response (`Idempotent-Replayed: true`, as Stripe sends it). */
export const IDEMPOTENT_REPLAYED_HEADER = 'Idempotent-Replayed';

/** The longest key accepted, in characters (as Stripe; the draft leaves it to the server). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** The JSON body of a 400, 409, 422 or 500 answer of {@link IdempotencyInterceptor} (RFC 9457 problem details). */
export interface IdempotencyProblem {
  /** The problem type URI: `about:blank` (the status says it all). */
  type: string;
  /** The status's reason phrase: `Bad Request`, `Conflict`, `Unprocessable Entity`, `Internal Server Error`. */
  title: string;
  /** The HTTP status: 400 (key missing or invalid), 409 (in flight), 422 (key reused), 500 (response not storable). */
  status: number;
  /** A sentence for people: what is wrong and what to do. */
  detail: string;
  /** 409 only: seconds to wait before retrying, as in the `Retry-After` header. */
  retryAfter?: number;
}

/** What is stored for a response: `http` marks the record as written here; status, allowed headers, body. */
interface ResponseRecord {
  http: 1;
  s: number;
  h?: Record<string, string | string[]>;
  b?: unknown;
}

/** Marks a request an IdempotencyInterceptor has taken, so a second one on the same route steps aside. */
const HANDLED = Symbol('nestjs-redis-lock:idempotent-route');

interface HttpRequestLike {
  headers?: Record<string, string | string[] | undefined>;
  body?: unknown;
  [HANDLED]?: true;
}

/** `${RouteParamtypes.RESPONSE}` and `${RouteParamtypes.NEXT}` of @nestjs/common (stable since Nest 5). */
const RESPONSE_PARAM_TYPES = new Set(['1', '2']);
/** ROUTE_ARGS_METADATA and RESPONSE_PASSTHROUGH_METADATA of @nestjs/common/constants (stable since Nest 5). */
const ROUTE_ARGS = '__routeArguments__';
const RESPONSE_PASSTHROUGH = '__responsePassthrough__';

/** An sf-string (RFC 8941): printable ASCII in quotes, `"` and `\` escaped. */
const SF_STRING = /^"(?:[\x20\x21\x23-\x5B\x5D-\x7E]|\\["\\])*"$/;
const PRINTABLE = /^[\x20-\x7E]+$/;

/**
 * Whether `Class.prototype[method]` injects the response with `@Res()`/`@Next()` without passthrough:
 * then the handler sends the response itself and nothing can be stored. @internal
 */
export function sendsItsOwnResponse(owner: object | undefined, method: string | symbol): boolean {
  if (!owner) return false;
  const args = (Reflect.getMetadata(ROUTE_ARGS, owner, method) ?? {}) as Record<string, unknown>;
  const injected = Object.keys(args).some((name) => RESPONSE_PARAM_TYPES.has(name.split(':')[0]!));
  return injected && Reflect.getMetadata(RESPONSE_PASSTHROUGH, owner, method) !== true;
}

/**
 * HTTP face of idempotency: applied by `@IdempotentRoute()`, it honours the `Idempotency-Key` request
 * header as the IETF httpapi draft and Stripe do. The first request with a key runs the handler and
 * stores its response (status, the headers the route allows, JSON body); a duplicate that arrives while
 * it runs waits for it (or gets `409` with `Retry-After`); a later duplicate gets the stored response,
 * marked `Idempotent-Replayed: true`, without running the handler. A missing key is `400` (unless the
 * route makes it optional), a key reused for another request `422`. Problem answers are
 * `application/problem+json` bodies, as those of {@link LockInterceptor}. Works on Express and Fastify;
 * outside HTTP, and on handlers without `@IdempotentRoute`, it passes everything through.
 *
 * To customise it (`scopeOf`: the key's owner for every route, e.g. from a tenant header;
 * `toHttpError`; `retryAfterSeconds`), extend it and register the subclass globally (`APP_INTERCEPTOR`)
 * or on the controller: it runs before the one `@IdempotentRoute` applies, which then steps aside.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  #engine?: Idempotency | null;
  readonly #checked = new WeakMap<object, true>();

  constructor(
    /** Reads the `@IdempotentRoute` definition of the handler or its controller. */
    @Inject(Reflector) protected readonly reflector: Reflector,
    /** Sets status and headers the same way on Express and Fastify. */
    @Inject(HttpAdapterHost) protected readonly adapterHost: HttpAdapterHost,
    /** Finds the app's LockService (a replaced one too) wherever LockModule was imported. */
    @Inject(ModuleRef) protected readonly moduleRef: ModuleRef,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const definition = this.reflector.getAllAndOverride<IdempotentRouteDefinition | undefined>(IDEMPOTENT_ROUTE_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (!definition) return next.handle();
    const request = context.switchToHttp().getRequest<HttpRequestLike>();
    if (request[HANDLED]) return next.handle();
    request[HANDLED] = true;
    const method = `${context.getClass().name}.${context.getHandler().name}`;
    let prepared: { key: string; fingerprint?: string; engine: Idempotency } | undefined;
    try {
      prepared = this.prepare(context, definition, method);
    } catch (error) {
      return throwError(() => this.toHttpError(error, context));
    }
    if (!prepared) return next.handle();
    const { key, fingerprint, engine } = prepared;
    return defer(() => this.execute(context, next, definition, engine, key, fingerprint, method)).pipe(
      catchError((error: unknown) => throwError(() => this.toHttpError(error, context))),
    );
  }

  /**
   * The owner of this request's key: the route's `scope` of the request, or undefined (one key space
   * for every client) when it has none.
   * @throws LockArgumentError when `scope` returns anything but a non-empty string.
   */
  protected scopeOf(context: ExecutionContext, definition: IdempotentRouteDefinition): string | undefined {
    if (!definition.scope) return undefined;
    const owner = definition.scope(context.switchToHttp().getRequest(), context);
    if (typeof owner !== 'string' || owner.length === 0) {
      throw new LockArgumentError(messages.routeScopeReturned(`${context.getClass().name}.${context.getHandler().name}`, owner));
    }
    return owner;
  }

  /**
   * Maps the errors of idempotency to HTTP: key reused `422`, in flight `409` with `Retry-After`, a
   * response that cannot be stored `500`, a stored error replayed with its status and body. Every other
   * error (the handler's own) passes unchanged.
   */
  protected toHttpError(error: unknown, context: ExecutionContext): unknown {
    if (error instanceof HttpException) return error;
    if (error instanceof IdempotencyKeyReuseError) {
      return this.problem(context, HttpStatus.UNPROCESSABLE_ENTITY, 'Unprocessable Entity', messages.httpKeyReused(), error);
    }
    if (error instanceof IdempotencyInFlightError) {
      return this.problem(context, HttpStatus.CONFLICT, 'Conflict', messages.httpInFlight(), error, this.retryAfterSeconds(error));
    }
    if (error instanceof IdempotencyResultError) {
      return this.problem(
        context,
        HttpStatus.INTERNAL_SERVER_ERROR,
        'Internal Server Error',
        messages.httpNotStored(error.path, error.found),
        error,
      );
    }
    if (error instanceof IdempotencyStoredError) {
      this.setHeader(context, IDEMPOTENT_REPLAYED_HEADER, 'true');
      if (error.status === undefined) return error;
      return new HttpException(error.response ?? error.message, error.status, { cause: error });
    }
    return error;
  }

  /**
   * `Retry-After` of a `409`, seconds: 1. The first request is running (its lease has a heartbeat), so
   * its lease's ttl says nothing about when it ends; a retry costs one Redis round trip.
   */
  protected retryAfterSeconds(_error: IdempotencyInFlightError): number {
    return 1;
  }

  /** The key, fingerprint and engine of this request; undefined to run it normally. */
  private prepare(
    context: ExecutionContext,
    definition: IdempotentRouteDefinition,
    method: string,
  ): { key: string; fingerprint?: string; engine: Idempotency } | undefined {
    const handler = context.getHandler();
    if (!this.#checked.has(handler)) {
      if (sendsItsOwnResponse(context.getClass(), handler.name)) throw new LockArgumentError(messages.routeResponseHandled(method));
      this.#checked.set(handler, true);
    }
    const request = context.switchToHttp().getRequest<HttpRequestLike>();
    const given = this.readKey(context, request);
    if (given === undefined) {
      if (!definition.required) return undefined;
      throw this.problem(context, HttpStatus.BAD_REQUEST, 'Bad Request', messages.httpKeyMissing());
    }
    const owner = this.scopeOf(context, definition);
    // Length-prefixed, so no scope or key can spell another scope's key (`a:b` + `c` is not `a` + `b:c`).
    const key = owner === undefined ? `http::${given}` : `http:${owner.length}:${owner}:${given}`;
    const fingerprint = this.fingerprintOf(context, definition, request);
    const engine = this.engine(method);
    // A LockService mock (overrideProvider in unit tests): no store to keep responses in; the handler runs every time.
    return engine ? { key, fingerprint, engine } : undefined;
  }

  /**
   * The key of the request's `Idempotency-Key` header: a String as the draft defines it (RFC 8941,
   * quoted: `"8e03978e…"`), or bare as Stripe's clients send it; undefined when there is none.
   * @throws HttpException 400 for a key that is empty, longer than 255 characters or not printable ASCII.
   */
  private readKey(context: ExecutionContext, request: HttpRequestLike): string | undefined {
    const raw = request.headers?.[IDEMPOTENCY_KEY_HEADER.toLowerCase()];
    if (raw === undefined) return undefined;
    const invalid = (problem: string) => this.problem(context, HttpStatus.BAD_REQUEST, 'Bad Request', messages.httpKeyInvalid(problem));
    if (typeof raw !== 'string') throw invalid('must be sent once');
    let key = raw;
    if (raw.startsWith('"')) {
      if (!SF_STRING.test(raw)) throw invalid('starts with a quote but is not a valid quoted string (RFC 8941 sf-string)');
      key = raw.slice(1, -1).replace(/\\(["\\])/g, '$1');
    }
    if (key.length === 0) throw invalid('must not be empty');
    if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
      throw invalid(`is ${key.length} characters long; at most ${MAX_IDEMPOTENCY_KEY_LENGTH} are allowed`);
    }
    if (!PRINTABLE.test(key)) throw invalid('may hold only printable ASCII characters (a UUID makes a good key)');
    return key;
  }

  private fingerprintOf(context: ExecutionContext, definition: IdempotentRouteDefinition, request: HttpRequestLike): string | undefined {
    const where = '@IdempotentRoute()';
    if (definition.fingerprint === false) return undefined;
    if (typeof definition.fingerprint === 'function') return fingerprintOf(where, definition.fingerprint(request, context));
    const adapter = this.adapterHost.httpAdapter;
    const body = request.body;
    return fingerprintOf(where, {
      m: String(adapter.getRequestMethod(request) as unknown),
      u: String(adapter.getRequestUrl(request) as unknown),
      // A raw body parser (text/octet-stream) gives a Buffer: its bytes, under another name than a parsed body.
      ...(Buffer.isBuffer(body) ? { raw: body.toString('base64') } : { b: body }),
    });
  }

  private engine(method: string): Idempotency | undefined {
    if (this.#engine === undefined) {
      let service: LockService;
      try {
        service = this.moduleRef.get(LockService, { strict: false });
      } catch {
        throw new LockNotInitializedError(messages.routeNoLockModule(method));
      }
      this.#engine = idempotencyOf(service) ?? null;
    }
    return this.#engine ?? undefined;
  }

  private async execute(
    context: ExecutionContext,
    next: CallHandler,
    definition: IdempotentRouteDefinition,
    engine: Idempotency,
    key: string,
    fingerprint: string | undefined,
    method: string,
  ): Promise<unknown> {
    const storeErrors = definition.storeErrors;
    const first: { ran: boolean; body?: unknown } = { ran: false };
    const outcome = await engine.execute<unknown>(
      '@IdempotentRoute()',
      key,
      {
        ttl: definition.ttl,
        leaseTtl: definition.leaseTtl,
        wait: definition.wait,
        inFlight: definition.inFlight,
        fingerprint,
        label: definition.label ?? method,
        // The interceptor's own refusal of a body is never a response to replay.
        storeErrors: storeErrors && ((error) => !(error instanceof IdempotencyError) && storeErrors(error)),
      },
      async () => {
        const body: unknown = await lastValueFrom(next.handle(), { defaultValue: undefined });
        first.ran = true;
        first.body = body;
        return this.record(context, definition, key, body);
      },
      HTTP_NAMESPACE,
    );
    // The first request answers with what the handler returned, as it would without idempotency.
    if (first.ran) return first.body;
    const record = outcome.value as ResponseRecord | null;
    if (typeof record !== 'object' || record === null || record.http !== 1 || typeof record.s !== 'number') {
      throw new LockStoreError(messages.routeForeignRecord(key), 'FOREIGN', [key]);
    }
    const response: unknown = context.switchToHttp().getResponse();
    this.adapterHost.httpAdapter.status(response, record.s);
    for (const [name, value] of Object.entries(record.h ?? {})) this.setHeader(context, name, value);
    this.setHeader(context, IDEMPOTENT_REPLAYED_HEADER, 'true');
    return record.b;
  }

  /**
   * The record of the handler's response: the status the response has now (set by `@HttpCode`, the
   * method's default, or `res.status()` with passthrough), the allowed headers, and the body as JSON
   * sends it (a Date becomes its ISO string, as on the wire).
   * @throws IdempotencyResultError for a stream, file or binary body, or one JSON cannot encode.
   */
  private record(context: ExecutionContext, definition: IdempotentRouteDefinition, key: string, body: unknown): ResponseRecord {
    const kind = streamingKind(body);
    if (kind) throw new IdempotencyResultError(key, '$body', kind);
    let json: unknown;
    try {
      const text = JSON.stringify(body);
      json = text === undefined ? undefined : JSON.parse(text);
    } catch (error) {
      throw new IdempotencyResultError(key, '$body', `not JSON-serialisable (${(error as Error).message})`);
    }
    const response = context.switchToHttp().getResponse<{ statusCode?: number; getHeader?: (name: string) => unknown }>();
    const adapter = this.adapterHost.httpAdapter;
    const headers: Record<string, string | string[]> = {};
    for (const name of definition.replayHeaders) {
      // Express's res and Fastify's reply both have getHeader(); adapters of Nest before 11 may not.
      const value: unknown = typeof adapter.getHeader === 'function' ? adapter.getHeader(response, name) : response.getHeader?.(name);
      if (typeof value === 'string' || typeof value === 'number') headers[name] = String(value);
      else if (Array.isArray(value)) headers[name] = value.map(String);
    }
    return {
      http: 1,
      s: typeof response.statusCode === 'number' ? response.statusCode : HttpStatus.OK,
      ...(Object.keys(headers).length > 0 ? { h: headers } : {}),
      ...(json === undefined ? {} : { b: json }),
    };
  }

  /** An `application/problem+json` HttpException (with `Retry-After` when given), as LockInterceptor answers. */
  private problem(
    context: ExecutionContext,
    status: number,
    title: string,
    detail: string,
    cause?: unknown,
    retryAfter?: number,
  ): HttpException {
    if (retryAfter !== undefined) this.setHeader(context, 'Retry-After', String(retryAfter));
    this.setHeader(context, 'Content-Type', 'application/problem+json');
    const body: IdempotencyProblem = { type: 'about:blank', title, status, detail, ...(retryAfter === undefined ? {} : { retryAfter }) };
    return new HttpException(body, status, cause === undefined ? undefined : { cause });
  }

  private setHeader(context: ExecutionContext, name: string, value: string | string[]): void {
    this.adapterHost.httpAdapter.setHeader(context.switchToHttp().getResponse(), name, value as string);
  }
}

/** What a body is when it is streamed or binary (never stored), or undefined for data. */
function streamingKind(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  if (body instanceof StreamableFile) return 'a StreamableFile';
  if (Buffer.isBuffer(body)) return 'a Buffer';
  if (ArrayBuffer.isView(body) || body instanceof ArrayBuffer) return `binary data (${body.constructor.name})`;
  if (typeof (body as { pipe?: unknown }).pipe === 'function') return 'a stream';
  if (typeof ReadableStream !== 'undefined' && body instanceof ReadableStream) return 'a ReadableStream';
  if (typeof Response !== 'undefined' && body instanceof Response) return 'a web Response';
  if (typeof Blob !== 'undefined' && body instanceof Blob) return 'a Blob';
  if (Symbol.asyncIterator in body) return 'an async iterable';
  return undefined;
}
