/**
 * Scenarios 2 and 3: 4 processes x 4 loops on ONE key. 'hold' measures throughput, handoffs, waits,
 * fairness and commands; 'count' does a non-atomic GET / 1 ms / SET increment and counts lost updates.
 */
import type { Redis } from 'ioredis';
import type { LibName } from '../lib/adapters.js';
import { startWorker, type Worker } from '../lib/children.js';
import { commandStats, statsDelta } from '../lib/redis-info.js';
import { SETTINGS } from '../lib/settings.js';
import { jain, summarize, type Summary } from '../lib/stats.js';
import type { AcquisitionRecord } from '../hot-worker.js';

interface WorkerResult {
  type: 'result';
  records: AcquisitionRecord[];
  errors: string[];
  errorCount: number;
  sent: { total: number; byName: Record<string, number> };
  window: [number, number];
}

/** What the hot-key runs of every scenario report about their contenders. */
export interface HotSummary {
  contenders: number;
  durationMs: number;
  /** Acquisitions granted inside the timed window, per second. */
  acquisitionsPerSec: number;
  acquisitions: number;
  /** Including those granted while the loops drained after the window. */
  acquisitionsTotal: number;
  /** Share of consecutive acquisitions that went to a different contender. */
  changedHands: number;
  /** Release sent by one contender -> acquire() resolved in a different one, ms. */
  handoffGap: Summary;
  wait: Summary;
  hold: Summary;
  perContender: { min: number; max: number; starved: number; jain: number; counts: number[] };
  /** Acquisitions that began before the previous holder sent its release: must be 0. */
  overlaps: number;
  errors: number;
  errorSamples: string[];
}

export interface HotResult extends HotSummary {
  serverPerAcquisition: number;
  clientPerAcquisition: number;
  serverByName: Record<string, number>;
  clientByName: Record<string, number>;
  /** Handshakes of connections opened during the run (QUIT of those closed), not counted per acquisition. */
  connectionSetup: { server: Record<string, number>; client: Record<string, number> };
}

/** The records of hold-mode workers (contender, asked, acquired, released), summarised. */
export function summarizeHot(
  results: readonly { records: readonly (readonly number[])[]; window: readonly number[]; errorCount: number; errors: readonly string[] }[],
  contenders: number,
): HotSummary {
  const records = results.flatMap((r) => r.records).sort((a, b) => a[2]! - b[2]!);
  const inWindow = results.flatMap((r) => r.records.filter((rec) => rec[2]! <= r.window[1]!));
  const counts = new Array<number>(contenders).fill(0);
  for (const rec of inWindow) counts[rec[0]!]!++;
  let changed = 0;
  let overlaps = 0;
  const gaps: number[] = [];
  for (let i = 1; i < records.length; i++) {
    const prev = records[i - 1]!;
    const next = records[i]!;
    if (next[2]! < prev[3]!) overlaps++;
    if (next[0] !== prev[0]) {
      changed++;
      gaps.push(next[2]! - prev[3]!);
    }
  }
  const windowMs = Math.max(...results.map((r) => r.window[1]! - r.window[0]!));
  return {
    contenders,
    durationMs: windowMs,
    acquisitionsPerSec: (inWindow.length / windowMs) * 1000,
    acquisitions: inWindow.length,
    acquisitionsTotal: records.length,
    changedHands: records.length > 1 ? changed / (records.length - 1) : Number.NaN,
    handoffGap: summarize(gaps),
    wait: summarize(records.map((r) => r[2]! - r[1]!)),
    hold: summarize(records.map((r) => r[3]! - r[2]!)),
    perContender: {
      min: Math.min(...counts),
      max: Math.max(...counts),
      starved: counts.filter((c) => c === 0).length,
      jain: jain(counts),
      counts,
    },
    overlaps,
    errors: results.reduce((a, r) => a + r.errorCount, 0),
    errorSamples: results.flatMap((r) => r.errors).slice(0, 5),
  };
}

export interface CountResult {
  increments: number;
  counter: number;
  lostUpdates: number;
  errors: number;
}

/**
 * Connection handshakes (a library's subscriber connection opened during the run) and QUITs of the
 * closing workers are not lock traffic: they are moved out of the per-acquisition counts, and reported.
 */
const SETUP_COMMANDS = ['hello', 'client', 'info', 'quit'];
function setupOnly(counts: { total: number; byName: Record<string, number> }): Record<string, number> {
  const moved: Record<string, number> = {};
  for (const name of SETUP_COMMANDS) {
    const n = counts.byName[name];
    if (!n) continue;
    moved[name] = n;
    counts.total -= n;
    delete counts.byName[name];
  }
  return moved;
}

async function runWorkers(lib: LibName | 'none', mode: 'hold' | 'count', url: string, key: string, counterKey: string, durationMs: number) {
  const s = SETTINGS.hot;
  const workers: Worker[] = [];
  try {
    for (let p = 0; p < s.processes; p++) {
      workers.push(
        startWorker('hot-worker.ts', {
          lib,
          url,
          ttl: s.ttl,
          key,
          counterKey,
          mode,
          firstContender: p * s.loopsPerProcess,
          loops: s.loopsPerProcess,
          durationMs,
          workMs: s.workMs,
        }),
      );
    }
    await Promise.all(workers.map((w) => w.next('ready', 30_000)));
    return {
      go: async (before: () => Promise<void>) => {
        await before();
        for (const w of workers) w.send({ type: 'go' });
        // Waits for every loop to finish its last acquisition (bounded by the wait budget of the libraries).
        return Promise.all(workers.map((w) => w.next<WorkerResult>('result', durationMs + 60_000)));
      },
      end: () => Promise.all(workers.map((w) => w.end())),
    };
  } catch (error) {
    await Promise.all(workers.map((w) => w.kill()));
    throw error;
  }
}

export async function hotKey(lib: LibName, url: string, probe: Redis, runId: string): Promise<HotResult> {
  const s = SETTINGS.hot;
  const contenders = s.processes * s.loopsPerProcess;
  const run = await runWorkers(lib, 'hold', url, `hot:${runId}`, '', s.durationMs);
  let before = {};
  let results: WorkerResult[];
  try {
    results = await run.go(async () => {
      before = await commandStats(probe);
    });
  } finally {
    await run.end();
  }
  const server = statsDelta(before, await commandStats(probe));

  const summary = summarizeHot(results, contenders);
  const records = { length: summary.acquisitionsTotal };
  const client = { total: 0, byName: {} as Record<string, number> };
  for (const r of results) {
    client.total += r.sent.total;
    for (const [name, n] of Object.entries(r.sent.byName)) client.byName[name] = (client.byName[name] ?? 0) + n;
  }
  const serverSetup = setupOnly(server);
  const clientSetup = setupOnly(client);
  return {
    ...summary,
    serverPerAcquisition: server.total / records.length,
    clientPerAcquisition: client.total / records.length,
    serverByName: server.byName,
    clientByName: client.byName,
    connectionSetup: { server: serverSetup, client: clientSetup },
  };
}

export async function lostUpdates(lib: LibName | 'none', url: string, probe: Redis, runId: string): Promise<CountResult> {
  const counterKey = `bench:counter:${runId}:${lib}`;
  await probe.set(counterKey, 0);
  const run = await runWorkers(lib, 'count', url, `count:${runId}`, counterKey, SETTINGS.correctness.durationMs);
  let results: WorkerResult[];
  try {
    results = await run.go(async () => undefined);
  } finally {
    await run.end();
  }
  const increments = results.reduce((a, r) => a + r.records.length, 0);
  const counter = Number(await probe.get(counterKey));
  await probe.del(counterKey);
  return { increments, counter, lostUpdates: increments - counter, errors: results.reduce((a, r) => a + r.errorCount, 0) };
}
