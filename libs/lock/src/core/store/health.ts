import { monotonic } from '../clock.js';
import { redact } from '../store-errors.js';

/** How a call of a health check ended, and how long it took (ms, rounded). @internal */
export type Answer<T> =
  { readonly ok: true; readonly value: T; readonly ms: number } | { readonly ok: false; readonly error: string; readonly ms: number };

/**
 * `pending`'s answer within `ms`, else `{ ok: false }` naming the silence (the call itself goes on, its
 * late outcome ignored). Never rejects; the timer never keeps the process alive. @internal
 */
export function answerWithin<T>(pending: Promise<T>, ms: number, lastError?: () => unknown): Promise<Answer<T>> {
  const start = monotonic();
  const took = () => Math.round(monotonic() - start);
  return new Promise<Answer<T>>((resolve) => {
    const timer = setTimeout(
      () => {
        const last = lastError?.();
        resolve({ ok: false, error: `no answer within ${ms} ms${last === undefined ? '' : ` (${errorText(last)})`}`, ms: took() });
      },
      Math.max(1, ms),
    );
    timer.unref();
    pending.then(
      (value) => {
        clearTimeout(timer);
        resolve({ ok: true, value, ms: took() });
      },
      (error: unknown) => {
        clearTimeout(timer);
        resolve({ ok: false, error: errorText(error), ms: took() });
      },
    );
  });
}

/** An error's message, without any password (health details are shown on /health pages). @internal */
export function errorText(error: unknown): string {
  const safe = redact(error) as unknown;
  return safe instanceof Error ? safe.message : String(safe);
}
