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
import { catchError, from, lastValueFrom, throwError, type Observable } from 'rxjs';
import type { RouteLockDefinition } from '../decorators/route-lock.decorator.js';
import { LockTimeoutError } from '../errors/lock.errors.js';
import { ROUTE_LOCK_METADATA } from '../lock.constants.js';
import { LockService } from '../lock.service.js';

/** The JSON body of a 423 answer (RFC 9457 problem details). */
export interface LockedProblem {
  type: string;
  title: string;
  status: number;
  detail: string;
  retryAfter: number;
}

/**
 * HTTP face of the locks. On a route with `@RouteLock` it takes the lock around the handler; on
 * any route it turns a LockTimeoutError (from `@RouteLock` or from a `@WithLock` method the handler
 * calls) into `423 Locked` with a `Retry-After` header (seconds) and a problem+json body, instead of a 500.
 * Works on Express and Fastify. Outside HTTP it passes everything through.
 *
 * Override `buildKey` to derive keys differently (e.g. add a tenant), or `toHttpError` to answer 409.
 */
@Injectable()
export class LockInterceptor implements NestInterceptor {
  constructor(
    @Inject(Reflector) protected readonly reflector: Reflector,
    @Inject(LockService) protected readonly locks: LockService,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const definition = this.reflector.getAllAndOverride<RouteLockDefinition | undefined>(ROUTE_LOCK_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    const handled = definition
      ? from(
          this.locks.using(this.buildKey(context, definition), { ttl: definition.ttl, wait: definition.wait }, () =>
            // handle() is called inside the lock's async context, so a @WithLock on the same key is re-entrant.
            lastValueFrom(next.handle(), { defaultValue: undefined }),
          ),
        )
      : next.handle();
    return handled.pipe(catchError((error: unknown) => throwError(() => this.toHttpError(error, context))));
  }

  /** The lock key(s) of this request. */
  protected buildKey(context: ExecutionContext, definition: RouteLockDefinition): string | string[] {
    if (typeof definition.key === 'string') return definition.key;
    return definition.key(context.switchToHttp().getRequest(), context);
  }

  /** Maps a lock timeout to 423 with Retry-After; every other error passes unchanged. */
  protected toHttpError(error: unknown, context: ExecutionContext): unknown {
    if (!(error instanceof LockTimeoutError)) return error;
    const retryAfter = Math.max(1, Math.ceil((error.retryAfter ?? 1000) / 1000));
    const response = context.switchToHttp().getResponse<{ header?: (n: string, v: string) => unknown; setHeader?: (n: string, v: string) => unknown }>();
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
