/**
 * Counts the commands this process's ioredis clients send, by wrapping `Redis.prototype.sendCommand`
 * (every command, EVALSHA of defineCommand scripts, SUBSCRIBE of subscriber connections, and the
 * EVAL sent after a NOSCRIPT, goes through it). No MONITOR needed. Clients passed to `exclude` (the
 * benchmark's own measuring connections) are not counted.
 */
import { Redis } from 'ioredis';

const excluded = new WeakSet<object>();
/** A command queued while connecting goes through sendCommand again when the connection is up: count it once. */
const counted = new WeakSet<object>();
let total = 0;
let byName: Record<string, number> = {};

// Unbound on purpose: the wrapper below calls it with the client as `this`.
// eslint-disable-next-line @typescript-eslint/unbound-method
const original = Redis.prototype.sendCommand;
Redis.prototype.sendCommand = function (this: Redis, ...args: Parameters<Redis['sendCommand']>) {
  const command = args[0] as { name?: string };
  if (!excluded.has(this) && !counted.has(command)) {
    counted.add(command);
    total++;
    const name = command.name ?? '?';
    byName[name] = (byName[name] ?? 0) + 1;
  }
  return original.apply(this, args);
} as Redis['sendCommand'];

export const sentCommands = {
  exclude(client: Redis): Redis {
    excluded.add(client);
    return client;
  },
  reset(): void {
    total = 0;
    byName = {};
  },
  snapshot(): { total: number; byName: Record<string, number> } {
    return { total, byName: { ...byName } };
  },
};
