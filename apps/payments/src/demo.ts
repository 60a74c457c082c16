/**
 * `npm run demo [-- [--no-lock] [--payments=N]]`: the race a lock prevents, measured.
 *
 * Starts the API and three worker processes against REDIS_URL (keys and queue under a random
 * prefix), opens 10 accounts of $100.00 each, posts 3,000 payments of $1.00 through the HTTP API,
 * waits for the workers, then compares the money that should be there with the money that is.
 * Every payment carries an Idempotency-Key and every 10th is retried by the "client" at once with the
 * same key; one webhook event per 10 payments is delivered twice. Neither duplicate may create a payment.
 * The report's lock figures (acquisitions, requeues, wait percentiles, lost locks, idempotent replays)
 * are scraped from every process's /metrics (the API's, and each worker's PAYMENTS_METRICS_PORT listener).
 * With `--no-lock` the workers run the same read-modify-write without the lock, and payments
 * are lost. Everything is bounded in time and cleaned up, also on Ctrl-C.
 *
 * Flags are parsed strictly: an unknown flag, a bad value or a stray argument prints the usage and
 * exits with 2, and so does a demo flag npm kept for itself (`npm run demo --payments=50`, without `--`).
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PAYMENT_IDEMPOTENCY, PAYMENTS_QUEUE } from './config.js';

const ACCOUNTS = 10;
const DEFAULT_PAYMENTS = 3_000;
const MIN_PAYMENTS = 10;
const MAX_PAYMENTS = 100_000;
const AMOUNT = 100; // cents: every payment is $1.00, so a lost update is exactly 100 cents
const INITIAL_BALANCE = 10_000; // cents: every account opens with $100.00

const USAGE = `usage: npm run demo [-- [--no-lock] [--payments=N]]
       node --import @swc-node/register/esm-register apps/payments/src/demo.ts [--no-lock] [--payments=N]

  --no-lock       run the workers without the lock, to see the race lose payments
  --payments=N    how many $1.00 payments to post, ${MIN_PAYMENTS} to ${MAX_PAYMENTS} (default ${DEFAULT_PAYMENTS}); also --payments N
  --help          show this help

Needs REDIS_URL, or redis-server on PATH (npm run demo starts a private one).`;

const { lock: LOCK, payments: PAYMENTS } = parseCli(process.argv.slice(2));
const WORKERS = 3;
const RETRY_EVERY = 10; // every 10th payment is posted twice with the same Idempotency-Key
const EVENT_EVERY = 10; // one webhook event (delivered twice) per 10 payments
const EVENTS = Math.floor(PAYMENTS / EVENT_EVERY);
const HTTP_CONCURRENCY = 24;
const STARTUP_TIMEOUT_MS = 30_000;
const RUN_TIMEOUT_MS = 45_000; // posting + processing
const STOP_TIMEOUT_MS = 5_000;

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const runId = randomBytes(4).toString('hex');
const keyPrefix = `demo-${runId}:`;
const queuePrefix = `demo-${runId}-bull`;
const root = fileURLToPath(new URL('../../../', import.meta.url));
const tty = process.stdout.isTTY;

const children: { name: string; child: ChildProcess; output: string[] }[] = [];
let interrupted = false;
process.once('SIGINT', () => (interrupted = true));
process.once('SIGTERM', () => (interrupted = true));
const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
const queue = new Queue(PAYMENTS_QUEUE, { connection: { url: redisUrl }, prefix: queuePrefix });

/** Parses the flags, or prints the usage and exits: 0 for `--help`, 2 for anything it does not understand. */
function parseCli(args: string[]): { lock: boolean; payments: number } {
  const fail = (message: string): never => {
    console.error(`demo: ${message}\n\n${USAGE}`);
    process.exit(2);
  };
  const misplaced = npmSwallowedFlags();
  if (misplaced.length > 0) {
    fail(`npm took ${misplaced.join(' ')} as its own option, so the demo never saw it: use npm run demo -- ${misplaced.join(' ')}`);
  }
  let values: { 'no-lock'?: boolean; payments?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: { 'no-lock': { type: 'boolean' }, payments: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error));
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  let payments = DEFAULT_PAYMENTS;
  if (values.payments !== undefined) {
    payments = /^\d+$/.test(values.payments) ? Number(values.payments) : NaN;
    if (!Number.isSafeInteger(payments) || payments < MIN_PAYMENTS || payments > MAX_PAYMENTS) {
      fail(`--payments must be a whole number from ${MIN_PAYMENTS} to ${MAX_PAYMENTS}, got "${values.payments}"`);
    }
  }
  return { lock: values['no-lock'] !== true, payments };
}

/**
 * The demo's flags given to `npm run demo` without `--`: npm keeps them as its own config and runs the
 * demo without them. npm exports a config it does not know as `npm_config_<name>`: npm 10 and 11 set
 * `npm_config_payments=50` for `--payments=50` (`true` for `--payments 50`). `--no-lock` leaves no trace
 * there: npm 10 and 11 expand it to their own `--no-lockfile-version`, drop that invalid value and export
 * nothing, and npm's process title hides its arguments from /proc. An npm that stops expanding
 * abbreviations (npm 11 warns it will) exports `npm_config_lock=` instead, which is caught here; for the
 * others, the lock-ON banner says how to pass the flag.
 */
function npmSwallowedFlags(): string[] {
  if (process.env.npm_lifecycle_event !== 'demo') return [];
  const found: string[] = [];
  if (process.env.npm_config_lock !== undefined || process.env.npm_config_no_lock !== undefined) found.push('--no-lock');
  const payments = process.env.npm_config_payments;
  if (payments !== undefined) found.push(/^\d+$/.test(payments) ? `--payments=${payments}` : '--payments=N');
  return found;
}

/** Runs the demo; resolves to the process exit code. */
async function main(): Promise<number> {
  const started = Date.now();
  let exitCode = 0;
  try {
    await redis.connect();
    const port = await freePort();
    const env = {
      ...process.env,
      REDIS_URL: redisUrl,
      PORT: String(port),
      PAYMENTS_KEY_PREFIX: keyPrefix,
      PAYMENTS_QUEUE_PREFIX: queuePrefix,
      PAYMENTS_NO_LOCK: LOCK ? '' : '1',
      PAYMENTS_API_WORKER: '0',
      // A short wait, so that contention shows: a job that cannot have its account within it
      // goes back to the queue for a moment instead of holding a worker slot.
      PAYMENTS_LOCK_WAIT_MS: process.env.PAYMENTS_LOCK_WAIT_MS ?? '50',
      PAYMENTS_REQUEUE_DELAY_MS: process.env.PAYMENTS_REQUEUE_DELAY_MS ?? '100',
      NO_COLOR: '1',
    };
    console.log(
      `payments demo: ${PAYMENTS} payments of ${dollars(AMOUNT)} into ${ACCOUNTS} accounts of ${dollars(INITIAL_BALANCE)} each, ` +
        `API + ${WORKERS} workers, lock ${LOCK ? 'ON' : 'OFF (--no-lock)'}`,
    );
    console.log(
      `every payment posted with an Idempotency-Key, every ${RETRY_EVERY}th retried by the client at once; ` +
        `${EVENTS} webhook events, each delivered twice at once`,
    );
    console.log(`redis ${redisUrl}, keys ${keyPrefix}*, queue prefix ${queuePrefix}`);
    if (LOCK && process.env.npm_lifecycle_event === 'demo') console.log('(to run without the lock: npm run demo -- --no-lock)');
    if (LOCK) console.log(`lock wait ${env.PAYMENTS_LOCK_WAIT_MS} ms, then the job is re-queued for ${env.PAYMENTS_REQUEUE_DELAY_MS} ms`);

    const api = start('api', 'main.ts', env);
    const workers = Array.from({ length: WORKERS }, (_, i) =>
      start(`worker-${i + 1}`, 'worker.ts', { ...env, PAYMENTS_METRICS_PORT: '0' }),
    );
    await Promise.all([waitForLine(api, /API listening/), ...workers.map((w) => waitForLine(w, /worker ready/))]);
    console.log(`started in ${((Date.now() - started) / 1000).toFixed(1)}s`);

    const base = `http://127.0.0.1:${port}`;
    // Every process's own /metrics: the API's, and the listener each worker opened on a free port.
    const scrapeUrls = [`${base}/metrics`, ...workers.map(metricsUrlOf)];
    const accounts = Array.from({ length: ACCOUNTS }, (_, i) => `acct-${i + 1}`);
    for (const id of accounts) await post(base, '/accounts', { id, initialBalance: INITIAL_BALANCE }, 201);

    const runStart = Date.now();
    const deadline = runStart + RUN_TIMEOUT_MS;
    const client = { posted: 0, retries: 0, retriedAnswersDiffering: 0, events: 0, deliveries: 0, eventPaymentIds: new Set<string>() };
    let next = 0;
    let postError: Error | undefined;
    // Payment i is posted with an Idempotency-Key; every RETRY_EVERY-th one is sent twice at once, as a
    // client whose first attempt timed out would; every EVENT_EVERY-th step also has the provider
    // deliver a webhook event twice at once. Both duplicates must get the first answer and create nothing.
    const pay = async (i: number) => {
      const body = { accountId: accounts[i % ACCOUNTS], amount: AMOUNT, reference: `demo-${i}` };
      const headers = { 'idempotency-key': `${runId}-payment-${i}` };
      const retried = i % RETRY_EVERY === 0;
      const answers = (await Promise.all(Array.from({ length: retried ? 2 : 1 }, () => post(base, '/payments', body, 202, headers)))) as {
        paymentId: string;
      }[];
      client.posted++;
      if (retried) {
        client.retries++;
        if (answers[0]!.paymentId !== answers[1]!.paymentId) client.retriedAnswersDiffering++;
      }
    };
    const deliver = async (i: number) => {
      const event = { eventId: `evt_${runId}_${i}`, accountId: accounts[(i + 3) % ACCOUNTS], amount: AMOUNT };
      const answers = (await Promise.all([0, 1].map(() => post(base, '/webhooks/payments', event, 200)))) as { paymentId: string }[];
      client.events++;
      client.deliveries += answers.length;
      for (const { paymentId } of answers) client.eventPaymentIds.add(paymentId);
    };
    const poster = async () => {
      while (next < PAYMENTS && postError === undefined && !interrupted && Date.now() < deadline) {
        const i = next++;
        await pay(i);
        if (i % EVENT_EVERY === EVENT_EVERY - 1) await deliver(i);
      }
    };
    let postingDone = false;
    const posting = Promise.all(Array.from({ length: HTTP_CONCURRENCY }, poster)).then(
      () => (postingDone = true),
      (err: unknown) => (postError = err instanceof Error ? err : new Error(String(err))),
    );

    // Each accepted payment and each webhook event is one job; a duplicate would be one more.
    const jobsExpected = () => client.posted + client.events;
    const progress = new Progress();
    let counts = await jobCounts();
    while (
      postError === undefined &&
      !interrupted &&
      Date.now() < deadline &&
      !(postingDone && counts.completed + counts.failed >= jobsExpected())
    ) {
      await sleep(200);
      counts = await jobCounts();
      progress.update(client.posted, counts, Date.now() - runStart);
    }
    await posting;
    progress.done(client.posted, counts, Date.now() - runStart);
    if (postError !== undefined) throw postError;
    const elapsed = Date.now() - runStart;
    if (interrupted) throw new Error('interrupted');
    const finished = counts.completed + counts.failed >= jobsExpected();

    let actual = 0;
    for (const id of accounts) actual += ((await get(base, `/accounts/${id}`)) as { balance: number }).balance;
    const credited = client.posted + client.events;
    const expected = ACCOUNTS * INITIAL_BALANCE + credited * AMOUNT;
    const lost = Math.round((expected - actual) / AMOUNT);
    // Jobs the queue holds beyond one per payment and per event: payments created by a duplicate.
    const duplicates = counts.total - jobsExpected() + client.retriedAnswersDiffering;
    const metrics = await scrape(scrapeUrls);
    const m = summarise(metrics);
    const eventsApplied = m.replays.webhookRan;

    const rows: [string, string][] = [
      ['payments accepted', `${client.posted} / ${PAYMENTS}`],
      ['client retries / duplicate payments created', `${client.retries} / ${duplicates}`],
      ['webhook deliveries / events applied', `${client.deliveries} / ${eventsApplied} (${client.events} events, each delivered twice)`],
      ['jobs completed / failed', `${counts.completed} / ${counts.failed}${finished ? '' : '  (timed out before all finished)'}`],
      [
        'expected total',
        `${dollars(expected)} (${ACCOUNTS} accounts × ${dollars(INITIAL_BALANCE)} + ${client.posted} payments × ${dollars(AMOUNT)}` +
          ` + ${client.events} webhook events × ${dollars(AMOUNT)})`,
      ],
      ['actual total', dollars(actual)],
      ['lost updates', `${lost} payment${lost === 1 ? '' : 's'} (${dollars(expected - actual)})`],
      ['account locks acquired', LOCK ? `${m.acquisitions}` : 'n/a (no lock)'],
      ['re-queued on contention', LOCK ? `${m.requeues}` : 'n/a (no lock)'],
      [
        'lock wait p50 / p99',
        LOCK && m.waitMs
          ? `${m.waitMs.p50} ms / ${m.waitMs.p99} ms (from the merged histogram buckets: bucket precision)`
          : 'n/a (no lock)',
      ],
      ['lost locks', `${m.lost}`],
      [
        'idempotent replays',
        `${m.replays.total} (payment retries ${m.replays.route}, webhook duplicates ${m.replays.webhook}, jobs ${m.replays.job})`,
      ],
      ['elapsed', `${(elapsed / 1000).toFixed(1)}s (posting + processing), ${((Date.now() - started) / 1000).toFixed(1)}s in all`],
    ];
    console.log(`\n  figures from /metrics of ${scrapeUrls.length} processes (API + ${WORKERS} workers), counters summed`);
    console.log(rows.map(([k, v]) => `  ${k.padEnd(45)}${v}`).join('\n'));
    const idempotencyBroken =
      duplicates !== 0 ||
      eventsApplied !== client.events ||
      client.eventPaymentIds.size !== client.events ||
      m.replays.route !== client.retries ||
      m.replays.webhook !== client.deliveries - client.events;
    if (idempotencyBroken) {
      console.log('\nUNEXPECTED: a retried payment or a redelivered webhook event was not answered with its first result.');
      exitCode = 1;
    } else if (LOCK && (lost !== 0 || !finished || counts.failed > 0)) {
      console.log('\nUNEXPECTED: with the lock every payment must be applied exactly once.');
      exitCode = 1;
    } else if (!LOCK) {
      console.log(`\nWithout the lock, ${lost} concurrent read-modify-writes overwrote each other. Run npm run demo to compare.`);
    } else {
      console.log(
        '\nEvery payment applied exactly once, retries and redeliveries included. Run npm run demo -- --no-lock to see the race.',
      );
    }
  } catch (err) {
    if (interrupted) {
      console.error('\ninterrupted: cleaning up');
      exitCode = 130;
    } else {
      console.error(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
      for (const { name, output } of children) {
        if (output.length) console.error(`--- last output of ${name} ---\n${output.join('\n')}`);
      }
      exitCode = 1;
    }
  } finally {
    await cleanup();
  }
  return exitCode;
}

function start(name: string, file: string, env: NodeJS.ProcessEnv): { name: string; child: ChildProcess; output: string[] } {
  const child = spawn(process.execPath, ['--import', '@swc-node/register/esm-register', `apps/payments/src/${file}`], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const entry = { name, child, output: [] as string[] };
  const keep = (chunk: Buffer) => {
    entry.output.push(...chunk.toString().split('\n').filter(Boolean));
    entry.output.splice(0, Math.max(0, entry.output.length - 30));
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  children.push(entry);
  return entry;
}

async function waitForLine(proc: { name: string; child: ChildProcess; output: string[] }, pattern: RegExp): Promise<void> {
  const until = Date.now() + STARTUP_TIMEOUT_MS;
  while (!proc.output.some((line) => pattern.test(line))) {
    if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited with code ${proc.child.exitCode} while starting`);
    if (interrupted) throw new Error('interrupted');
    if (Date.now() > until) throw new Error(`${proc.name} did not start within ${STARTUP_TIMEOUT_MS / 1000}s`);
    await sleep(50);
  }
}

async function post(base: string, path: string, body: unknown, expected: number, headers: Record<string, string> = {}): Promise<unknown> {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status !== expected) throw new Error(`POST ${path} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

async function get(base: string, path: string): Promise<unknown> {
  const res = await fetch(base + path, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`GET ${path} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

async function jobCounts(): Promise<Record<'completed' | 'failed' | 'active' | 'waiting' | 'delayed' | 'total', number>> {
  const c = await queue.getJobCounts('completed', 'failed', 'active', 'waiting', 'delayed', 'prioritized', 'waiting-children');
  const total = Object.values(c).reduce((sum, n) => sum + (n ?? 0), 0);
  return {
    completed: c.completed ?? 0,
    failed: c.failed ?? 0,
    active: c.active ?? 0,
    waiting: c.waiting ?? 0,
    delayed: c.delayed ?? 0,
    total,
  };
}

/** The metrics URL a worker printed in its "worker ready" line. */
function metricsUrlOf(worker: { name: string; output: string[] }): string {
  for (const line of worker.output) {
    const url = /worker ready.*metrics (http:\/\/\S+\/metrics)/.exec(line)?.[1];
    if (url) return url;
  }
  throw new Error(`${worker.name} did not say where its metrics are`);
}

/** One sample of Prometheus text: `name{label="value",...} number`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Scrapes every URL and returns all their samples together (the processes' series side by side). */
async function scrape(urls: string[]): Promise<Sample[]> {
  const texts = await Promise.all(
    urls.map(async (url) => {
      const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
      return res.text();
    }),
  );
  const samples: Sample[] = [];
  for (const line of texts.join('\n').split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[name!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum of every sample named `name` whose labels include `where`, across processes. */
function sum(samples: Sample[], name: string, where: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((total, s) => total + s.value, 0);
}

/**
 * The `q` quantile of a histogram merged across processes (their cumulative bucket counts added per
 * `le`), interpolated linearly inside its bucket as Prometheus' histogram_quantile() does: the answer is
 * only as precise as the bucket it falls in. Undefined without observations.
 */
function quantile(samples: Sample[], name: string, where: Record<string, string>, q: number): number | undefined {
  const merged = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !Object.entries(where).every(([k, v]) => s.labels[k] === v)) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    merged.set(le, (merged.get(le) ?? 0) + s.value);
  }
  const buckets = [...merged].sort(([a], [b]) => a - b);
  const count = buckets.at(-1)?.[1] ?? 0;
  if (count === 0) return undefined;
  const rank = q * count;
  let [lower, below] = [0, 0];
  for (const [le, cumulative] of buckets) {
    if (cumulative >= rank) {
      if (le === Infinity) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(1, cumulative - below);
    }
    [lower, below] = [le, cumulative];
  }
  return lower;
}

/** The demo's figures, from the lock metrics of every process. */
function summarise(samples: Sample[]) {
  const processor = { label: 'PaymentProcessor.process' };
  const replayed = (label: string) => sum(samples, 'lock_idempotent_calls_total', { label, outcome: 'replayed' });
  const ms = (seconds: number | undefined) => (seconds === undefined ? undefined : Math.round(seconds * 1000));
  const p50 = ms(quantile(samples, 'lock_wait_seconds', processor, 0.5));
  const p99 = ms(quantile(samples, 'lock_wait_seconds', processor, 0.99));
  return {
    acquisitions: sum(samples, 'lock_acquisitions_total', processor),
    requeues: sum(samples, 'lock_requeues_total'),
    lost: sum(samples, 'lock_lost_total'),
    waitMs: p50 === undefined || p99 === undefined ? undefined : { p50, p99 },
    replays: {
      total: sum(samples, 'lock_idempotent_calls_total', { outcome: 'replayed' }),
      route: replayed('PaymentsController.create'),
      webhook: replayed('WebhooksController.receive'),
      webhookRan: sum(samples, 'lock_idempotent_calls_total', { label: 'WebhooksController.receive', outcome: 'ran' }),
      job: replayed(PAYMENT_IDEMPOTENCY.label),
    },
  };
}

/** One updating line on a terminal, a line every two seconds otherwise (CI logs). */
class Progress {
  private lastPrint = -Infinity;
  private lastLine = '';

  update(posted: number, c: Awaited<ReturnType<typeof jobCounts>>, ms: number, final = false): void {
    const processed = c.completed + c.failed;
    const width = 30;
    const filled = Math.min(width, Math.round((processed / (PAYMENTS + EVENTS)) * width));
    const line =
      `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(processed).padStart(4)}/${PAYMENTS + EVENTS} processed` +
      ` | posted ${posted} | active ${c.active} waiting ${c.waiting} delayed ${c.delayed} | ${(ms / 1000).toFixed(1)}s`;
    if (tty) {
      process.stdout.write(`\r${line}\x1b[K${final ? '\n' : ''}`);
    } else if ((final || ms - this.lastPrint >= 2_000) && line !== this.lastLine) {
      this.lastPrint = ms;
      this.lastLine = line;
      console.log(line);
    }
  }

  done(posted: number, c: Awaited<ReturnType<typeof jobCounts>>, ms: number): void {
    this.update(posted, c, ms, true);
  }
}

function dollars(cents: number): string {
  return `${cents < 0 ? '-' : ''}$${(Math.abs(cents) / 100).toFixed(2)}`;
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** Stops the children (SIGTERM, then SIGKILL), obliterates the queue and deletes the run's keys. */
async function cleanup(): Promise<void> {
  await Promise.all(
    children.map(async ({ child }) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const stopped = await Promise.race([exited.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)]);
      if (!stopped) child.kill('SIGKILL');
    }),
  );
  try {
    await queue.obliterate({ force: true });
  } catch {
    // the keys are deleted below anyway
  }
  await queue.close().catch(() => undefined);
  try {
    for (const pattern of [`${keyPrefix}*`, `${queuePrefix}:*`]) {
      let cursor = '0';
      for (let i = 0; i < 10_000; i++) {
        const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        if (keys.length) await redis.unlink(...keys);
        cursor = nextCursor;
        if (cursor === '0') break;
      }
    }
  } catch (err) {
    console.error(`cleanup: could not delete ${keyPrefix}* / ${queuePrefix}:* (${String(err)})`);
  }
  redis.disconnect();
}

process.exit(await main());
