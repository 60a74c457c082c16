export { IdempotencyService } from './idempotency.service.js';
export { Idempotent, type IdempotentOptions, type IdempotencyKeyFn, type IdempotentMethodDecorator } from './idempotent.decorator.js';
export { type IdempotencyOptions } from './idempotency.js';
export { IdempotentRoute, type IdempotentRouteDecorator } from './idempotent-route.decorator.js';
export { type IdempotentRouteOptions, type IdempotentRequestFn, type IdempotentRouteDefinition } from './idempotent-route.options.js';
export {
  IdempotencyInterceptor,
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENT_REPLAYED_HEADER,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  type IdempotencyProblem,
} from './idempotency.interceptor.js';
