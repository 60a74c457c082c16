/**
 * Scenario 7: the library's engine (`createLockClient`) on three topologies, in the same run, on servers
 * started here: one node, a Cluster of 3 masters (no replicas), and a Redlock quorum of 3 independent
 * nodes. For each: the uncontended run (64 loops, one key each) and the hot key (4 processes x 4 loops
 * on one key); then ratios against the single node.
 */
import { Redis } from 'ioredis';
import { startRedis, type RedisServerHandle } from '../../test/helpers/redis-server.js';
import { startCluster, type ClusterHandle } from '../../test/helpers/redis-topologies.js';
import { WAIT_BUDGET_MS } from '../lib/adapters.js';
import { startWorker, type Worker } from '../lib/children.js';
import { commandStats, statsDelta } from '../lib/redis-info.js';
import { SETTINGS } from '../lib/settings.js';
import type { Summary } from '../lib/stats.js';
import type { AcquisitionRecord } from '../hot-worker.js';
import type { TopologyRedis } from '../topologies-worker.js';
import { summarizeHot, type HotSummary } from './hot-key.js';

export const TOPOLOGY_MODES = ['single', 'cluster', 'redlock'] as const;
export type TopologyMode = (typeof TOPOLOGY_MODES)[number];

export const TOPOLOGY_LABELS: Record<TopologyMode, string> = {
  single: 'single node',
  cluster: 'Cluster, 3 masters',
  redlock: 'Redlock, 3 nodes',
};

export interface TopologyUncontended {
  cyclesPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  passes: { cyclesPerSec: number; latency: Summary; errors: number }[];
  /** Cluster only: share of the commands each master executed during the measured passes. */
  perMasterShare?: number[];
}

/** The hot-key figures of one mode (as scenario 2 reports them). */
export type TopologyHot = HotSummary;

export interface TopologyRatios {
  /** Cluster uncontended cycles/s ÷ single node's (goal >= 1.0). */
  clusterThroughput: number;
  /** Redlock uncontended latency p50 ÷ single node's (goal <= 2.0). */
  redlockLatencyP50: number;
  /** Jain's index of the hot key, per mode. */
  jain: Partial<Record<TopologyMode, number>>;
}

export interface TopologiesResult {
  modes: Partial<Record<TopologyMode, { uncontended?: TopologyUncontended; hot?: TopologyHot }>>;
  ratios: TopologyRatios;
  servers: Record<TopologyMode, string[]>;
  startupMs: number;
  errors: string[];
}

interface UncontendedMessage {
  type: 'result';
  cyclesPerSec: number;
  latency: Summary;
  errors: number;
  errorSamples: string[];
}

interface HotMessage {
  type: 'result';
  records: AcquisitionRecord[];
  errors: string[];
  errorCount: number;
  window: [number, number];
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

export async function topologies(runId: string, log: (line: string) => void): Promise<TopologiesResult> {
  const t0 = Date.now();
  // One node for 'single', three independent ones for 'redlock', and the cluster: all started at once.
  const startedSingles = await Promise.allSettled([0, 1, 2, 3].map(() => startRedis()));
  const singles = startedSingles.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  let cluster: ClusterHandle | undefined;
  try {
    const failed = startedSingles.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
    cluster = await startCluster({ masters: 3, replicasPerMaster: 0 });
    const [single, ...quorum] = singles as [RedisServerHandle, ...RedisServerHandle[]];
    const servers: Record<TopologyMode, string[]> = {
      single: [single.url],
      cluster: [...cluster.urls],
      redlock: quorum.map((s) => s.url),
    };
    const redisOf: Record<TopologyMode, TopologyRedis> = {
      single: single.url,
      cluster: { cluster: [...cluster.urls] },
      redlock: quorum.map((s) => s.url),
    };
    const startupMs = Date.now() - t0;
    log(
      `  servers up in ${(startupMs / 1000).toFixed(1)} s: single ${single.port}, cluster ${cluster.nodes.map((n) => n.port).join('/')}, redlock ${quorum.map((s) => s.port).join('/')}`,
    );

    const result: TopologiesResult = {
      modes: {},
      ratios: { clusterThroughput: Number.NaN, redlockLatencyP50: Number.NaN, jain: {} },
      servers,
      startupMs,
      errors: [],
    };
    for (const mode of TOPOLOGY_MODES) result.modes[mode] = {};
    const note = (what: string, error: unknown) => {
      const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
      log(`  FAILED ${message}`);
      result.errors.push(message);
    };

    // Uncontended: every pass runs the three modes, in alternating order.
    const s = SETTINGS.uncontended;
    const passes = new Map<TopologyMode, UncontendedMessage[]>(TOPOLOGY_MODES.map((m) => [m, []]));
    const masterProbes = cluster.urls.map((url) => new Redis(url).on('error', () => undefined));
    const masterCalls = new Array<number>(masterProbes.length).fill(0);
    try {
      for (let pass = 0; pass < s.passes; pass++) {
        const order = pass % 2 === 0 ? [...TOPOLOGY_MODES] : [...TOPOLOGY_MODES].reverse();
        for (const mode of order) {
          try {
            const before = mode === 'cluster' ? await Promise.all(masterProbes.map((p) => commandStats(p))) : [];
            const r = await runUncontended(redisOf[mode]);
            if (mode === 'cluster') {
              const after = await Promise.all(masterProbes.map((p) => commandStats(p)));
              after.forEach((a, i) => (masterCalls[i]! += statsDelta(before[i]!, a).total));
            }
            passes.get(mode)!.push(r);
            log(
              `  uncontended ${mode} pass ${pass + 1}: ${Math.round(r.cyclesPerSec)} cycles/s, p50 ${r.latency.p50.toFixed(2)} ms, p99 ${r.latency.p99.toFixed(2)} ms, errors ${r.errors}`,
            );
          } catch (error) {
            note(`uncontended ${mode} pass ${pass + 1}`, error);
          }
        }
      }
    } finally {
      for (const p of masterProbes) p.disconnect();
    }
    const totalCalls = masterCalls.reduce((a, b) => a + b, 0);
    for (const mode of TOPOLOGY_MODES) {
      const p = passes.get(mode)!;
      if (!p.length) continue;
      result.modes[mode]!.uncontended = {
        cyclesPerSec: mean(p.map((x) => x.cyclesPerSec)),
        p50: mean(p.map((x) => x.latency.p50)),
        p99: mean(p.map((x) => x.latency.p99)),
        errors: p.reduce((a, x) => a + x.errors, 0),
        passes: p.map((x) => ({ cyclesPerSec: x.cyclesPerSec, latency: x.latency, errors: x.errors })),
        ...(mode === 'cluster' && totalCalls > 0 ? { perMasterShare: masterCalls.map((c) => c / totalCalls) } : {}),
      };
    }

    // Hot key: one mode after the other, a fresh key each.
    for (const mode of TOPOLOGY_MODES) {
      try {
        const h = await runHot(redisOf[mode], `hot:${runId}:${mode}`);
        result.modes[mode]!.hot = h;
        log(
          `  hot ${mode}: ${Math.round(h.acquisitionsPerSec)} acq/s, wait p99 ${h.wait.p99.toFixed(1)} / max ${h.wait.max.toFixed(1)} ms, handoff p50 ${h.handoffGap.p50.toFixed(2)} ms, Jain ${h.perContender.jain.toFixed(3)}, starved ${h.perContender.starved}, overlaps ${h.overlaps}, errors ${h.errors}`,
        );
      } catch (error) {
        note(`hot ${mode}`, error);
      }
    }

    const u = (mode: TopologyMode) => result.modes[mode]?.uncontended;
    result.ratios = {
      clusterThroughput: (u('cluster')?.cyclesPerSec ?? Number.NaN) / (u('single')?.cyclesPerSec ?? Number.NaN),
      redlockLatencyP50: (u('redlock')?.p50 ?? Number.NaN) / (u('single')?.p50 ?? Number.NaN),
      jain: Object.fromEntries(TOPOLOGY_MODES.map((m) => [m, result.modes[m]?.hot?.perContender.jain ?? Number.NaN])),
    };
    return result;
  } finally {
    await Promise.allSettled([cluster?.stop(), ...singles.map((x) => x.stop())]);
  }
}

async function runUncontended(redis: TopologyRedis): Promise<UncontendedMessage> {
  const s = SETTINGS.uncontended;
  const worker = startWorker('topologies-worker.ts', {
    job: 'uncontended',
    redis,
    ttl: s.ttl,
    wait: WAIT_BUDGET_MS,
    loops: s.loops,
    warmupMs: s.warmupMs,
    durationMs: s.durationMs,
  });
  try {
    return await worker.next<UncontendedMessage>('result', s.warmupMs + s.durationMs + 30_000);
  } finally {
    await worker.end();
  }
}

async function runHot(redis: TopologyRedis, key: string): Promise<TopologyHot> {
  const s = SETTINGS.hot;
  const contenders = s.processes * s.loopsPerProcess;
  const workers: Worker[] = [];
  let results: HotMessage[];
  try {
    for (let p = 0; p < s.processes; p++) {
      workers.push(
        startWorker('topologies-worker.ts', {
          job: 'hot',
          redis,
          ttl: s.ttl,
          wait: WAIT_BUDGET_MS,
          key,
          firstContender: p * s.loopsPerProcess,
          loops: s.loopsPerProcess,
          durationMs: s.durationMs,
          workMs: s.workMs,
        }),
      );
    }
    await Promise.all(workers.map((w) => w.next('ready', 30_000)));
    for (const w of workers) w.send({ type: 'go' });
    // Every loop finishes the wait it is in after the deadline: bounded by the wait budget.
    results = await Promise.all(workers.map((w) => w.next<HotMessage>('result', s.durationMs + WAIT_BUDGET_MS + 10_000)));
  } finally {
    await Promise.all(workers.map((w) => w.end()));
  }

  return summarizeHot(results, contenders);
}
