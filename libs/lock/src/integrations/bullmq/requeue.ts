import { LockArgumentError, type LockTimeoutError } from '../../core/errors.js';
import { messages } from '../../core/messages.js';
import { lockServiceInternals } from '../../lock.registry.js';

/**
 * BullMQ moves a job to delayed, without counting a failed attempt, when `process` throws an error
 * named `DelayedError` after `job.moveToDelayed()`. Matching the name keeps bullmq an optional
 * dependency. @internal
 */
class RequeuedSignal extends Error {
  constructor() {
    super('Job requeued: its lock was busy');
    this.name = 'DelayedError';
  }
}

interface JobLike {
  id?: string;
  moveToDelayed(timestamp: number, token?: string): Promise<void>;
}

/**
 * `onTimeout: 'requeue'`, the one home of BullMQ requeueing: the processor's arguments are
 * `(job, token)`; the job is moved back to delayed for `delay` ms, the service's `'requeued'` event is
 * emitted, and BullMQ is told not to count a failed attempt.
 * @throws LockArgumentError when the method's first argument is not a BullMQ job.
 * @internal
 */
export async function requeueJob(
  service: object,
  method: string,
  error: LockTimeoutError,
  args: unknown[],
  delay: number,
  label?: string,
): Promise<never> {
  const job = args[0] as JobLike | undefined;
  if (typeof job?.moveToDelayed !== 'function') throw new LockArgumentError(messages.requeueNeedsJob(method));
  await job.moveToDelayed(Date.now() + delay, args[1] as string | undefined);
  // Reaches LockService.on('requeued') listeners of a real service; a mock has no engine to tell.
  const client = lockServiceInternals.get(service)?.client;
  if (client?.observed('requeued')) client.emit('requeued', { keys: error.keys, delay, jobId: job.id, label });
  throw new RequeuedSignal();
}
