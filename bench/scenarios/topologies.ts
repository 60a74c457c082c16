/**
 * Scenario 7: the library's engine (`createLockClient`) on three topologies, in the same run, on servers
 * started here: one node, a Cluster of 3 masters (no replicas), and a Redlock quorum of 3 independent
 * nodes. For each: the uncontended run (64 loops, one key each: throughput), one loop alone (latency:
 * acquire + release with nothing queued behind it), and the hot key (4 processes x 4 loops on one key);
 * then ratios against the single node.
 *
 * The uncontended and one-loop runs go in passes, each pass running the three modes back to back in a
 * rotating order; a ratio is taken within each pass (its modes ran seconds apart, so a machine whose
 * speed drifts, as a shared 2-core box does by up to 2x, moves both sides) and reported as the median
 * over the passes, with the range. Client and server CPU per cycle are measured too: on a small machine
 * they, not the network, bound the throughput.
 */
import { Redis } from 'ioredis';
import { startRedis, type RedisServerHandle } from '../../test/helpers/redis-server.js';
import { startCluster, type ClusterHandle } from '../../test/helpers/redis-topologies.js';
import { WAIT_BUDGET_MS } from '../lib/adapters.js';
import { startWorker, type Worker } from '../lib/children.js';
import { commandStats, serverCpuSeconds, statsDelta } from '../lib/redis-info.js';
import { SETTINGS } from '../lib/settings.js';
import { median, passRatio as ratioOfPasses, type PassRatio, type Summary } from '../lib/stats.js';
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

/** One pass of one mode: cycles/s, cycle latencies, CPU per cycle of the benchmark process and of the servers. */
export interface TopologyPass {
  cyclesPerSec: number;
  latency: Summary;
  errors: number;
  clientUsPerCycle: number;
  serverUsPerCycle: number;
}

export interface TopologyUncontended {
  /** Medians over the passes. */
  cyclesPerSec: number;
  p50: number;
  p99: number;
  clientUsPerCycle: number;
  serverUsPerCycle: number;
  errors: number;
  passes: TopologyPass[];
  /** Cluster only: share of the commands each master executed during the measured passes. */
  perMasterShare?: number[];
}

/** The hot-key figures of one mode (as scenario 2 reports them). */
export type TopologyHot = HotSummary;

export type { PassRatio } from '../lib/stats.js';

export interface TopologyRatios {
  /** Cluster uncontended cycles/s ÷ single node's, 64 loops (goal >= 1.0). */
  clusterThroughput: PassRatio;
  /** Redlock acquire + release latency p50 ÷ single node's, one loop alone (goal <= 2.0). */
  redlockLatencyP50: PassRatio;
  /** The same ratio with 64 loops, where latency is the throughput's inverse (for reference). */
  redlockLatencyP50Loaded: PassRatio;
  /** The same ratio, one loop, through a link with latency: the round-trip-bound regime. */
  redlockLatencyP50Link: PassRatio;
  /** Jain's index of the hot key, per mode. */
  jain: Partial<Record<TopologyMode, number>>;
}

export interface TopologiesResult {
  /** `uncontended`: 64 loops; `alone`: one loop; `link`: one loop through a link with latency (not Cluster). */
  modes: Partial<
    Record<TopologyMode, { uncontended?: TopologyUncontended; alone?: TopologyUncontended; link?: TopologyUncontended; hot?: TopologyHot }>
  >;
  /** The link's delay each way, ms (0: no link run). */
  linkDelayMs: number;
  ratios: TopologyRatios;
  servers: Record<TopologyMode, string[]>;
  startupMs: number;
  errors: string[];
}

interface UncontendedMessage {
  type: 'result';
  cycles: number;
  cyclesPerSec: number;
  latency: Summary;
  errors: number;
  errorSamples: string[];
  /** CPU time of the worker process over the measured window, µs. */
  cpuUs: number;
}

interface HotMessage {
  type: 'result';
  records: AcquisitionRecord[];
  errors: string[];
  errorCount: number;
  window: [number, number];
}

const NO_RATIO: PassRatio = { median: Number.NaN, min: Number.NaN, max: Number.NaN };

/** `of(mode)` ÷ `of('single')` within each pass both ran in; median and range. */
function passRatio(
  passes: Map<TopologyMode, (TopologyPass | undefined)[]>,
  mode: TopologyMode,
  of: (p: TopologyPass) => number,
): PassRatio {
  const values = (m: TopologyMode) => Array.from(passes.get(m) ?? [], (p) => (p ? of(p) : undefined));
  return ratioOfPasses(values(mode), values('single'));
}

function summarizePasses(p: TopologyPass[]): TopologyUncontended {
  return {
    cyclesPerSec: median(p.map((x) => x.cyclesPerSec)),
    p50: median(p.map((x) => x.latency.p50)),
    p99: median(p.map((x) => x.latency.p99)),
    clientUsPerCycle: median(p.map((x) => x.clientUsPerCycle)),
    serverUsPerCycle: median(p.map((x) => x.serverUsPerCycle)),
    errors: p.reduce((a, x) => a + x.errors, 0),
    passes: p,
  };
}

export async function topologies(runId: string, log: (line: string) => void): Promise<TopologiesResult> {
  const t0 = Date.now();
  // One node for 'single', three independent ones for 'redlock', and the cluster: all started at once.
  const startedSingles = await Promise.allSettled([0, 1, 2, 3].map(() => startRedis()));
  const singles = startedSingles.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  let cluster: ClusterHandle | undefined;
  let linkProxy: Worker | undefined;
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
      ratios: {
        clusterThroughput: NO_RATIO,
        redlockLatencyP50: NO_RATIO,
        redlockLatencyP50Loaded: NO_RATIO,
        redlockLatencyP50Link: NO_RATIO,
        jain: {},
      },
      linkDelayMs: 0,
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

    // Uncontended (64 loops) and alone (one loop): every pass runs the three modes back to back, in a
    // rotating order, so no mode always runs first or last.
    const s = SETTINGS.topologies;
    const RUNS = ['uncontended', 'alone', 'link'] as const;
    const runs = { uncontended: s.loops, alone: 1, link: 1 } as const;
    const passes = Object.fromEntries(
      RUNS.map((run) => [run, new Map<TopologyMode, (TopologyPass | undefined)[]>(TOPOLOGY_MODES.map((m) => [m, []]))]),
    ) as Record<(typeof RUNS)[number], Map<TopologyMode, (TopologyPass | undefined)[]>>;
    // The link: a delaying proxy (a process of its own) in front of the single node and the quorum's
    // nodes. Not the Cluster: its nodes announce their own ports, which a client then uses directly.
    const linkOf: Partial<Record<TopologyMode, TopologyRedis>> = {};
    try {
      linkProxy = startWorker('delay-proxy.ts', { targets: [single.port, ...quorum.map((q) => q.port)], delayMs: s.linkDelayMs });
      const { ports } = await linkProxy.next<{ type: 'ready'; ports: number[] }>('ready', 30_000);
      const linkUrl = (port: number) => `redis://127.0.0.1:${port}`;
      linkOf.single = linkUrl(ports[0]!);
      linkOf.redlock = ports.slice(1).map(linkUrl);
      result.linkDelayMs = s.linkDelayMs;
    } catch (error) {
      note('the delaying proxy (no link runs)', error);
    }
    const probesOf = (mode: TopologyMode) => servers[mode].map((url) => new Redis(url).on('error', () => undefined));
    const probes: Record<TopologyMode, Redis[]> = {
      single: probesOf('single'),
      cluster: probesOf('cluster'),
      redlock: probesOf('redlock'),
    };
    const masterCalls = new Array<number>(probes.cluster.length).fill(0);
    const cpuOf = async (mode: TopologyMode) =>
      (await Promise.all(probes[mode].map((p) => serverCpuSeconds(p)))).reduce((a, b) => a + b, 0);
    try {
      for (let pass = 0; pass < s.passes; pass++) {
        for (const run of RUNS) {
          const order = TOPOLOGY_MODES.map((_, i) => TOPOLOGY_MODES[(i + pass) % TOPOLOGY_MODES.length]!);
          for (const mode of order) {
            const target = run === 'link' ? linkOf[mode] : redisOf[mode];
            if (target === undefined) continue;
            try {
              const stats =
                mode === 'cluster' && run === 'uncontended' ? await Promise.all(probes.cluster.map((p) => commandStats(p))) : [];
              const cpuBefore = await cpuOf(mode);
              const r = await runUncontended(target, runs[run]);
              // The servers' CPU over the whole worker run (warm-up included), per measured cycle scaled
              // to the measured window: an estimate, the same for every mode.
              const serverUs = ((await cpuOf(mode)) - cpuBefore) * 1e6 * (s.durationMs / (s.warmupMs + s.durationMs));
              if (stats.length) {
                const after = await Promise.all(probes.cluster.map((p) => commandStats(p)));
                after.forEach((x, i) => (masterCalls[i]! += statsDelta(stats[i]!, x).total));
              }
              passes[run].get(mode)![pass] = {
                cyclesPerSec: r.cyclesPerSec,
                latency: r.latency,
                errors: r.errors,
                clientUsPerCycle: r.cpuUs / Math.max(1, r.cycles),
                serverUsPerCycle: serverUs / Math.max(1, r.cycles),
              };
              log(
                `  ${run} ${mode} pass ${pass + 1}: ${Math.round(r.cyclesPerSec)} cycles/s, p50 ${r.latency.p50.toFixed(3)} ms, p99 ${r.latency.p99.toFixed(2)} ms, ` +
                  `client ${(r.cpuUs / Math.max(1, r.cycles)).toFixed(1)} µs/cycle, errors ${r.errors}`,
              );
            } catch (error) {
              note(`${run} ${mode} pass ${pass + 1}`, error);
            }
          }
        }
      }
    } finally {
      for (const p of Object.values(probes).flat()) p.disconnect();
    }
    const totalCalls = masterCalls.reduce((a, b) => a + b, 0);
    for (const mode of TOPOLOGY_MODES) {
      for (const run of RUNS) {
        const p = passes[run].get(mode)!.filter((x): x is TopologyPass => x !== undefined);
        if (p.length) result.modes[mode]![run] = summarizePasses(p);
      }
      const un = result.modes[mode]!.uncontended;
      if (un && mode === 'cluster' && totalCalls > 0) un.perMasterShare = masterCalls.map((c) => c / totalCalls);
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

    result.ratios = {
      clusterThroughput: passRatio(passes.uncontended, 'cluster', (p) => p.cyclesPerSec),
      redlockLatencyP50: passRatio(passes.alone, 'redlock', (p) => p.latency.p50),
      redlockLatencyP50Loaded: passRatio(passes.uncontended, 'redlock', (p) => p.latency.p50),
      redlockLatencyP50Link: passRatio(passes.link, 'redlock', (p) => p.latency.p50),
      jain: Object.fromEntries(TOPOLOGY_MODES.map((m) => [m, result.modes[m]?.hot?.perContender.jain ?? Number.NaN])),
    };
    return result;
  } finally {
    linkProxy?.send({ type: 'stop' });
    await Promise.allSettled([linkProxy?.end(2_000), cluster?.stop(), ...singles.map((x) => x.stop())]);
  }
}

async function runUncontended(redis: TopologyRedis, loops: number): Promise<UncontendedMessage> {
  const s = SETTINGS.topologies;
  const worker = startWorker('topologies-worker.ts', {
    job: 'uncontended',
    redis,
    ttl: s.ttl,
    wait: WAIT_BUDGET_MS,
    loops,
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
