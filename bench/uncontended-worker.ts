/**
 * Scenario 1, one library per process: `loops` concurrent loops, one key each, acquire + release
 * as fast as they go. Warm-up, then a measured window; reports cycles, cycle latencies, the
 * commands sent (client) and executed (server, INFO commandstats) per cycle, and the CPU time per
 * cycle of this process and of the Redis server (INFO cpu): on a small machine they share the cores.
 */
import { Redis } from 'ioredis';
import { createAdapter, type LibName } from './lib/adapters.js';
import { now } from './lib/clock.js';
import { sentCommands } from './lib/commands.js';
import { commandStats, serverCpuSeconds, statsDelta } from './lib/redis-info.js';
import { summarize } from './lib/stats.js';
import { workerSide } from './lib/worker.js';

interface Config {
  lib: LibName;
  url: string;
  ttl: number;
  loops: number;
  warmupMs: number;
  durationMs: number;
}

const { config, finish } = workerSide<Config>();
const adapter = await createAdapter(config.lib, { url: config.url, ttl: config.ttl });
const probe = sentCommands.exclude(new Redis(config.url));

let measuring = false;
let stop = false;
let cycles = 0;
let errors = 0;
const latencies: number[] = [];
const MAX_CYCLES_PER_LOOP = 5_000_000;

async function loop(i: number): Promise<void> {
  const key = `u:${i}`;
  for (let n = 0; n < MAX_CYCLES_PER_LOOP && !stop; n++) {
    const start = now();
    try {
      const held = await adapter.acquire(key);
      await held.release();
    } catch {
      errors++;
      continue;
    }
    if (measuring) {
      cycles++;
      latencies.push(now() - start);
    }
  }
}

const loops = Array.from({ length: config.loops }, (_, i) => loop(i));
await new Promise((resolve) => setTimeout(resolve, config.warmupMs));
const before = await commandStats(probe);
const serverCpuBefore = await serverCpuSeconds(probe);
sentCommands.reset();
const cpuBefore = process.cpuUsage();
measuring = true;
const start = now();
await new Promise((resolve) => setTimeout(resolve, config.durationMs));
measuring = false;
const elapsed = now() - start;
const cpu = process.cpuUsage(cpuBefore);
const sent = sentCommands.snapshot();
const serverCpu = (await serverCpuSeconds(probe)) - serverCpuBefore;
const after = await commandStats(probe);
stop = true;
await Promise.all(loops);
await adapter.close();
probe.disconnect();

const server = statsDelta(before, after);
finish({
  type: 'result',
  lib: config.lib,
  cycles,
  errors,
  elapsedMs: elapsed,
  cyclesPerSec: (cycles / elapsed) * 1000,
  latency: summarize(latencies),
  // In-flight cycles at the window's edges make these approximate (±loops/cycles).
  serverPerCycle: server.total / cycles,
  clientPerCycle: sent.total / cycles,
  clientCpuUsPerCycle: (cpu.user + cpu.system) / cycles,
  serverCpuUsPerCycle: (serverCpu * 1e6) / cycles,
  serverByName: server.byName,
  clientByName: sent.byName,
});
