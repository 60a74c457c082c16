import { SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { LockArgumentError } from '../../core/errors.js';
import { messages } from '../../core/messages.js';
import { labelOf, subscribeAll, type LockEventSource } from '../lock-source.js';

/** The tracer name (instrumentation scope) of every span. */
export const LOCK_TRACER_NAME = 'nestjs-redis-lock';

/** Options of `LockTracingModule.forRoot()`. */
export interface LockTracingOptions {
  /**
   * Add the lock keys to each wait span (`lock.keys`). Default false: keys may carry ids you do not
   * want in a tracing backend; the label (`lock.label`) is always there.
   */
  recordKeys?: boolean;
}

/** The options, checked. @internal */
export interface CheckedTracingOptions {
  readonly recordKeys: boolean;
}

/**
 * Checks the options at declaration.
 * @throws LockArgumentError naming the option and its value.
 * @internal
 */
export function checkTracingOptions(options: LockTracingOptions | undefined): CheckedTracingOptions {
  const where = 'LockTracingModule.forRoot()';
  const given = (options ?? {}) as Record<string, unknown>;
  if (typeof given !== 'object' || given === null) throw new LockArgumentError(messages.optionsNotObject(where, options));
  for (const name of Object.keys(given)) {
    if (name !== 'recordKeys') throw new LockArgumentError(messages.optionUnknown(where, name, undefined, ['recordKeys']));
  }
  const recordKeys = given.recordKeys ?? false;
  if (typeof recordKeys !== 'boolean')
    throw new LockArgumentError(messages.argumentInvalid(where, 'recordKeys', 'must be true or false', recordKeys));
  return { recordKeys };
}

/** Bound on wait spans open at once (each ends with its acquisition; this only guards against a leak). */
const MAX_OPEN_SPANS = 10_000;

/** Outcomes of an idempotent call whose caller gets an error. */
const FAILED_OUTCOMES = new Set(['failed', 'error-stored', 'in-flight']);

/**
 * Spans of one LockService's events: `lock.wait` from `acquiring` to its `acquired`, `timeout` or
 * `failed` (matched by token), and `lock.idempotent` for each idempotent call (recorded when it ends,
 * started at its beginning). With no tracer provider registered, the API's no-op tracer makes nothing.
 * @internal
 */
export class LockTracing {
  private readonly tracer: Tracer = trace.getTracer(LOCK_TRACER_NAME);
  private readonly open = new Map<string, Span>();

  constructor(private readonly options: CheckedTracingOptions) {}

  /** Traces `source`'s events; returns the function that stops it and ends the spans still open. */
  attach(source: LockEventSource): () => void {
    const unsubscribe = subscribeAll(source, {
      acquiring: ({ keys, token, label, wait }) => {
        if (this.open.size >= MAX_OPEN_SPANS) return;
        const attributes: Attributes = { 'lock.label': labelOf(label), 'lock.keys.count': keys.length, 'lock.wait_limit_ms': wait };
        if (this.options.recordKeys) attributes['lock.keys'] = [...keys];
        // Started in the caller's context: its active span is the parent.
        const span = this.tracer.startSpan('lock.wait', { attributes });
        if (span.isRecording()) this.open.set(token, span);
      },
      acquired: ({ token, waited, fencingToken }) => {
        this.end(token, { 'lock.outcome': 'acquired', 'lock.waited_ms': waited, 'lock.fencing_token': fencingToken });
      },
      timeout: ({ token, waited }) => {
        this.end(token, { 'lock.outcome': 'timeout', 'lock.waited_ms': waited }, `the lock was busy for ${waited} ms`);
      },
      failed: ({ token, error }) => {
        const span = this.open.get(token);
        span?.recordException(error);
        this.end(token, { 'lock.outcome': 'failed' }, error.message);
      },
      idempotent: ({ label, outcome, duration }) => {
        const end = Date.now();
        const span = this.tracer.startSpan('lock.idempotent', {
          startTime: end - duration,
          attributes: { 'lock.label': labelOf(label), 'lock.outcome': outcome, 'lock.duration_ms': duration },
        });
        if (FAILED_OUTCOMES.has(outcome)) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
        span.end(end);
      },
    });
    return () => {
      unsubscribe();
      for (const token of [...this.open.keys()])
        this.end(token, { 'lock.outcome': 'shutdown' }, 'the tracing stopped before the acquisition ended');
    };
  }

  private end(token: string, attributes: Attributes, error?: string): void {
    const span = this.open.get(token);
    if (!span) return;
    this.open.delete(token);
    span.setAttributes(attributes);
    if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    span.end();
  }
}
