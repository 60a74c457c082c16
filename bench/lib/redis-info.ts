/** Reads server-side facts: INFO commandstats (Lua-internal commands included on Redis 7), version, DBSIZE. */
import type { Redis } from 'ioredis';

export type CommandStats = Record<string, number>;

export async function commandStats(client: Redis): Promise<CommandStats> {
  const text = (await client.info('commandstats')) as string;
  const stats: CommandStats = {};
  for (const line of text.split('\r\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (match) stats[match[1]!] = Number(match[2]);
  }
  return stats;
}

/**
 * Commands the server executed between two snapshots, without the INFO that took `before`
 * (it is counted once it has run, so it shows up in `after`).
 */
export function statsDelta(before: CommandStats, after: CommandStats): { total: number; byName: CommandStats } {
  const byName: CommandStats = {};
  let total = 0;
  for (const [name, calls] of Object.entries(after)) {
    let delta = calls - (before[name] ?? 0);
    if (name === 'info') delta -= 1;
    if (delta > 0) {
      byName[name] = delta;
      total += delta;
    }
  }
  return { total, byName };
}

export async function redisVersion(client: Redis): Promise<string> {
  const text = (await client.info('server')) as string;
  return /redis_version:([^\r\n]+)/.exec(text)?.[1] ?? 'unknown';
}

/** CPU seconds (user + system) the server has used since it started: INFO cpu. */
export async function serverCpuSeconds(client: Redis): Promise<number> {
  const text = (await client.info('cpu')) as string;
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(text)?.[1] ?? Number.NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}
