/**
 * Lock events through `@nestjs/event-emitter`: `nestjs-redis-lock/event-emitter` (optional peer:
 * `@nestjs/event-emitter`). See docs/observability.md ("@nestjs/event-emitter").
 * @packageDocumentation
 */
export { LockEventEmitterModule, LOCK_EVENT_NAMES } from './lock-event-emitter.module.js';
