import { applyDecorators, SetMetadata, UseInterceptors } from '@nestjs/common';
import { LockArgumentError } from '../core/errors.js';
import { messages } from '../core/messages.js';
import { IDEMPOTENT_ROUTE_METADATA, IdempotencyInterceptor, sendsItsOwnResponse } from './idempotency.interceptor.js';
import { checkIdempotentRouteOptions, type IdempotentRouteOptions } from './idempotent-route.options.js';

/** What `@IdempotentRoute(...)` returns: a decorator for a route handler, or for a controller (all its routes). */
export type IdempotentRouteDecorator = <Y>(
  /** The controller class, or the prototype holding the handler. */
  target: object,
  propertyKey?: string | symbol,
  descriptor?: TypedPropertyDescriptor<Y>,
) => void;

/**
 * Makes an HTTP route idempotent with the `Idempotency-Key` request header, as the IETF httpapi draft
 * and Stripe do. The first request with a key runs the handler and stores its response for `ttl`
 * (default 24 h): the status (from `@HttpCode`, the method's default, or `res.status()` with
 * `@Res({ passthrough: true })`), the headers listed in `replayHeaders`, and the JSON body. A duplicate
 * that arrives while the first runs waits for it and gets the same response (or `409` with
 * `Retry-After` with `inFlight: 'reject'`, or once `wait` has passed); a later duplicate gets the stored
 * response, with `Idempotent-Replayed: true`, without running the handler.
 *
 * | request | answer |
 * | --- | --- |
 * | no `Idempotency-Key` (`required`, the default) | `400`, problem+json |
 * | key empty, over 255 characters, or not printable ASCII | `400`, problem+json |
 * | same key, another method, URL or body (`fingerprint`) | `422`, problem+json |
 * | same key while the first runs, not waiting | `409`, `Retry-After`, problem+json |
 * | the handler throws | the error as usual; nothing stored, a retry runs again (unless `storeErrors` keeps it) |
 * | the body is a stream, file or binary | `500`, problem+json: the handler ran, nothing was stored |
 *
 * Without `scope`, every client shares one key space: set `scope` (e.g. `(req) => req.user.id`) on any
 * route that serves more than one client, so no client is replayed another's response. The handler
 * must return its body (no `@Res()` without passthrough), and the response is stored as the handler
 * returns it: global interceptors, the controller's, and those listed below `@IdempotentRoute` run
 * outside it, on the first response and on every replay (a replayed body is plain data).
 *
 * @param options see {@link IdempotentRouteOptions}: `required`, `ttl`, `leaseTtl`, `wait`, `inFlight`,
 *   `scope`, `replayHeaders`, `fingerprint`, `storeErrors`, `label`.
 * @returns a decorator for a route handler or a controller.
 * @throws LockArgumentError at declaration for a bad option, or a handler that takes `@Res()` without passthrough.
 * @example
 * ```ts
 * @Post()
 * @IdempotentRoute({ scope: (req) => req.user.id, replayHeaders: ['location'] })
 * async create(@Body() dto: NewPayment, @Res({ passthrough: true }) res: Response): Promise<PaymentView> {
 *   const payment = await this.payments.create(dto);
 *   res.header('Location', `/payments/${payment.id}`);
 *   return payment;
 * }
 * ```
 */
export function IdempotentRoute(options?: IdempotentRouteOptions): IdempotentRouteDecorator {
  const where = '@IdempotentRoute()';
  const definition = checkIdempotentRouteOptions(where, options);
  const check = (target: object, propertyKey?: string | symbol, descriptor?: PropertyDescriptor): void => {
    if (propertyKey === undefined) return;
    const owner = (target as { constructor?: { name?: string } }).constructor;
    const method = `${owner?.name || 'anonymous'}.${String(propertyKey)}`;
    if (typeof descriptor?.value !== 'function') throw new LockArgumentError(messages.decoratorNotMethod(where, method, 'not a method'));
    // Parameter decorators run before method decorators: @Res() is already recorded here.
    if (sendsItsOwnResponse(owner, propertyKey)) throw new LockArgumentError(messages.routeResponseHandled(method));
  };
  return applyDecorators(
    check as MethodDecorator,
    SetMetadata(IDEMPOTENT_ROUTE_METADATA, definition),
    UseInterceptors(IdempotencyInterceptor),
  ) as IdempotentRouteDecorator;
}
