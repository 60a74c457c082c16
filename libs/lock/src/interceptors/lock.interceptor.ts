import {
  HttpException,
  HttpStatus,
  Inject,
  Injectable,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { catchError, throwError, type Observable } from 'rxjs';
import type { RouteLockDefinition } from '../decorators/route-lock.decorator.js';
import { routeLockScope } from './route-lock.scope.js';
import { LockTimeoutError } from '../core/errors.js';
import { ROUTE_LOCK_METADATA } from '../lock.constants.js';

/** The JSON body of a 423 answer (RFC 9457 problem details). */
export interface LockedProblem {
  /** The problem type URI: `about:blank` (the status says it all). */
  type: string;
  /** Always `Locked`. */
  title: string;
  /** Always 423 (`HttpStatus.LOCKED`). */
  status: number;
  /** A sentence for people: the resource is busy, try again after `Retry-After` seconds. */
  detail: string;
  /** Seconds to wait before retrying, as in the `Retry-After` header (at least 1). */
  retryAfter: number;
}

/**
 * HTTP face of the locks. It never takes a lock itself: it hands the request to a `@RouteLock`
 * handler (whose lock is taken after pipes, around the handler), and turns a `LockTimeoutError`
 * (from `@RouteLock`, or from a `@WithLock` method the handler calls) into `423 Locked` with a
 * `Retry-After` header in seconds and an `application/problem+json` body, instead of a 500.
 * Works on Express and Fastify; outside HTTP it passes everything through.
 *
 * Override `buildKey` to derive route keys differently (e.g. add a tenant), or `toHttpError` to
 * answer 409 or another body.
 */
@Injectable()
export class LockInterceptor implements NestInterceptor {
  constructor(
    /** Reads the `@RouteLock` definition of the handler. */
    @Inject(Reflector) protected readonly reflector: Reflector,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const definition = this.reflector.get<RouteLockDefinition | undefined>(ROUTE_LOCK_METADATA, context.getHandler());
    // handle() binds the handler to the async context it is called in, so a @RouteLock handler
    // (and the pipes before it) runs inside this scope and finds the request here.
    const handled = definition
      ? routeLockScope.run(
          { buildKey: (d) => this.buildKey(context, d), buildTenant: (d) => d.tenant?.(context.switchToHttp().getRequest(), context) },
          () => next.handle(),
        )
      : next.handle();
    return handled.pipe(catchError((error: unknown) => throwError(() => this.toHttpError(error, context))));
  }

  /** The lock key(s) of this request for a `@RouteLock` definition. */
  protected buildKey(context: ExecutionContext, definition: RouteLockDefinition): string | string[] {
    if (typeof definition.key === 'string') return definition.key;
    return definition.key(context.switchToHttp().getRequest(), context);
  }

  /** Maps a lock timeout to 423 with Retry-After; every other error passes unchanged. */
  protected toHttpError(error: unknown, context: ExecutionContext): unknown {
    if (!(error instanceof LockTimeoutError)) return error;
    const retryAfter = Math.max(1, Math.ceil((error.retryAfter ?? 1000) / 1000));
    const response = context.switchToHttp().getResponse<{
      header?: (name: string, value: string) => unknown;
      setHeader?: (name: string, value: string) => unknown;
    }>();
    const set = (name: string, value: string) =>
      typeof response.header === 'function' ? response.header(name, value) : response.setHeader?.(name, value);
    set('Retry-After', String(retryAfter));
    set('Content-Type', 'application/problem+json');
    const body: LockedProblem = {
      type: 'about:blank',
      title: 'Locked',
      status: HttpStatus.LOCKED,
      detail: 'The resource is busy with another request; try again after Retry-After seconds.',
      retryAfter,
    };
    return new HttpException(body, HttpStatus.LOCKED, { cause: error });
  }
}
