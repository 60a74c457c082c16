import { Counter, Gauge, Histogram, register as defaultRegistry, type Registry } from 'prom-client';
import { LockArgumentError } from '../../core/errors.js';
import type { LockStats } from '../../core/lock-client.js';
import { messages } from '../../core/messages.js';
import { labelOf, subscribeAll, type LockEventSource } from '../lock-source.js';

/**
 * Default buckets of the wait-time histogram, in seconds: an uncontended acquisition takes about a
 * millisecond; contended waits run up to the `wait` option (default 5 s).
 */
export const LOCK_WAIT_BUCKETS: readonly number[] = Object.freeze([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]);

/** Default buckets of the hold-time histogram, in seconds: from a few ms of work to a 15-minute job. */
export const LOCK_HOLD_BUCKETS: readonly number[] = Object.freeze([
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900,
]);

/** Options of `LockPrometheusModule.forRoot()`. */
export interface LockPrometheusOptions {
  /** The registry the metrics are registered in. Default: prom-client's default `register`. */
  registry?: Registry;
  /** Prefix of every metric name. Default `lock_` (e.g. `lock_acquisitions_total`). */
  prefix?: string;
  /** Buckets of `<prefix>wait_seconds`, increasing, in seconds. Default {@link LOCK_WAIT_BUCKETS}. */
  waitBuckets?: readonly number[];
  /** Buckets of `<prefix>hold_seconds`, increasing, in seconds. Default {@link LOCK_HOLD_BUCKETS}. */
  holdBuckets?: readonly number[];
}

/** The options, checked and with their defaults. @internal */
export interface CheckedPrometheusOptions {
  readonly registry: Registry;
  readonly prefix: string;
  readonly waitBuckets: number[];
  readonly holdBuckets: number[];
}

const WHERE = 'LockPrometheusModule.forRoot()';
const KNOWN = ['registry', 'prefix', 'waitBuckets', 'holdBuckets'];

/**
 * Checks the options at declaration, before anything is registered.
 * @throws LockArgumentError naming the option and its value.
 * @internal
 */
export function checkPrometheusOptions(options: LockPrometheusOptions | undefined): CheckedPrometheusOptions {
  const given = (options ?? {}) as Record<string, unknown>;
  if (typeof given !== 'object' || given === null) throw new LockArgumentError(messages.optionsNotObject(WHERE, options));
  for (const name of Object.keys(given)) {
    if (!KNOWN.includes(name)) throw new LockArgumentError(messages.optionUnknown(WHERE, name, undefined, KNOWN));
  }
  const { registry = defaultRegistry, prefix = 'lock_' } = given as LockPrometheusOptions;
  if (typeof registry !== 'object' || registry === null || typeof registry.getSingleMetric !== 'function') {
    throw new LockArgumentError(messages.argumentInvalid(WHERE, 'registry', 'must be a prom-client Registry', registry));
  }
  if (typeof prefix !== 'string' || !/^([a-zA-Z_:][a-zA-Z0-9_:]*)?$/.test(prefix)) {
    throw new LockArgumentError(
      messages.argumentInvalid(WHERE, 'prefix', 'must be empty or a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)', prefix),
    );
  }
  const buckets = (name: 'waitBuckets' | 'holdBuckets', fallback: readonly number[]): number[] => {
    const value = given[name];
    if (value === undefined) return [...fallback];
    const ok =
      Array.isArray(value) &&
      value.length > 0 &&
      value.every((b, i) => typeof b === 'number' && Number.isFinite(b) && b > 0 && (i === 0 || b > (value[i - 1] as number)));
    if (!ok)
      throw new LockArgumentError(messages.argumentInvalid(WHERE, name, 'must be a non-empty array of increasing positive seconds', value));
    return [...(value as number[])];
  };
  return {
    registry,
    prefix,
    waitBuckets: buckets('waitBuckets', LOCK_WAIT_BUCKETS),
    holdBuckets: buckets('holdBuckets', LOCK_HOLD_BUCKETS),
  };
}

/** Marks the metrics this library registered (a symbol from the global registry: the same in a CJS and an ESM copy). */
const OURS = Symbol.for('nestjs-redis-lock.metric');
/** The stats sources of each gauge: every app of the process that reports into the same registry. */
const SOURCES = Symbol.for('nestjs-redis-lock.stats-sources');

type Marked = { [OURS]?: true; [SOURCES]?: Set<() => LockStats | undefined> };

/**
 * The metric `name` of `registry`: the one registered before by this library (another app of the
 * process, a test's second module), or a new one from `create`.
 * @throws LockArgumentError when something else registered that name.
 */
function metric<M extends object>(registry: Registry, name: string, create: (registers: Registry[]) => M): M {
  const existing = registry.getSingleMetric(name) as (M & Marked) | undefined;
  if (existing) {
    if (existing[OURS]) return existing;
    throw new LockArgumentError(messages.metricTaken(name));
  }
  const made = create([registry]) as M & Marked;
  Object.defineProperty(made, OURS, { value: true });
  return made;
}

/** The sum of a stat over the live sources of a gauge. */
function total(gauge: Marked, stat: keyof LockStats): number {
  let sum = 0;
  for (const source of gauge[SOURCES] ?? []) sum += source()?.[stat] ?? 0;
  return sum;
}

/** A gauge read from the sources' stats when scraped. */
function statGauge(registry: Registry, name: string, help: string, stat: keyof LockStats): Gauge & Marked {
  const gauge: Gauge & Marked = metric(
    registry,
    name,
    (registers) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(total(gauge, stat));
        },
      }),
  );
  if (!gauge[SOURCES]) Object.defineProperty(gauge, SOURCES, { value: new Set() });
  return gauge;
}

/**
 * The lock metrics in one registry, fed by one LockService's events. Counters and histograms are shared
 * with any other LockMetrics on the same registry and prefix; the gauges add up every live source.
 * @internal
 */
export class LockMetrics {
  private readonly acquisitions: Counter<'label'>;
  private readonly timeouts: Counter<'label'>;
  private readonly failures: Counter<'label'>;
  private readonly lost: Counter<'label'>;
  private readonly requeues: Counter<'label'>;
  private readonly idempotent: Counter<'label' | 'outcome'>;
  private readonly wait: Histogram<'label'>;
  private readonly hold: Histogram<'label'>;
  private readonly gauges: (Gauge & Marked)[];

  constructor(options: CheckedPrometheusOptions) {
    const { registry, prefix } = options;
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      metric(registry, prefix + name, (registers) => new Counter<L>({ name: prefix + name, help, labelNames, registers }));
    const histogram = (name: string, help: string, buckets: number[]) =>
      metric(
        registry,
        prefix + name,
        (registers) => new Histogram({ name: prefix + name, help, labelNames: ['label'] as const, buckets, registers }),
      );
    this.acquisitions = counter('acquisitions_total', 'Locks acquired, by label.', ['label']);
    this.timeouts = counter('timeouts_total', 'Acquisitions that gave up after their wait, by label.', ['label']);
    this.failures = counter(
      'failures_total',
      'Acquisitions that failed with an error other than a timeout (store down, shutdown), by label.',
      ['label'],
    );
    this.lost = counter('lost_total', 'Held locks found lost (expired, taken over, force-released), by label.', ['label']);
    this.requeues = counter('requeues_total', 'BullMQ jobs moved back to delayed because their lock was busy, by label.', ['label']);
    this.idempotent = counter(
      'idempotent_calls_total',
      'Idempotent calls by label and outcome (outcome="replayed": answered from a stored result).',
      ['label', 'outcome'],
    );
    this.wait = histogram(
      'wait_seconds',
      'Time from the start of an acquisition to the lock being held, seconds, by label.',
      options.waitBuckets,
    );
    this.hold = histogram('hold_seconds', 'Time a lock was held until its release, seconds, by label.', options.holdBuckets);
    this.gauges = [
      statGauge(registry, `${prefix}held`, 'Locks held by this process now.', 'held'),
      statGauge(
        registry,
        `${prefix}waiting`,
        'Acquisitions under way in this process now (waiting for a busy lock, or their attempt on its way).',
        'acquiring',
      ),
    ];
  }

  /** Feeds the metrics from `source`'s events and stats; returns the function that stops it. */
  attach(source: LockEventSource): () => void {
    const stats = typeof source.stats === 'function' ? () => source.stats!() : () => undefined;
    for (const gauge of this.gauges) gauge[SOURCES]!.add(stats);
    const unsubscribe = subscribeAll(source, {
      acquired: ({ label, waited }) => {
        const labels = { label: labelOf(label) };
        this.acquisitions.inc(labels);
        this.wait.observe(labels, waited / 1000);
      },
      released: ({ label, heldFor }) => {
        if (typeof heldFor === 'number') this.hold.observe({ label: labelOf(label) }, heldFor / 1000);
      },
      timeout: ({ label }) => this.timeouts.inc({ label: labelOf(label) }),
      failed: ({ label }) => this.failures.inc({ label: labelOf(label) }),
      lost: ({ label }) => this.lost.inc({ label: labelOf(label) }),
      requeued: ({ label }) => this.requeues.inc({ label: labelOf(label) }),
      idempotent: ({ label, outcome }) => this.idempotent.inc({ label: labelOf(label), outcome }),
    });
    return () => {
      unsubscribe();
      for (const gauge of this.gauges) gauge[SOURCES]!.delete(stats);
    };
  }
}
