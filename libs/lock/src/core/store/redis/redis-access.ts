/**
 * A boot-time check that the Redis user may run everything the Redis store needs, so that a missing
 * ACL permission fails at once with its name instead of on the first contended lock, hours later.
 *
 * It changes nothing in Redis: permissions of the scripts' commands are asked with
 * `redis.acl_check_cmd` (Redis 7) from a script that runs none of them, and the only command sent
 * to a channel is a SUBSCRIBE followed by UNSUBSCRIBE on a connection of its own, closed after.
 * `ACL DRYRUN` would say the same, but a restricted user is rarely allowed to run it.
 * @internal
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { LockError, LockStoreError } from '../../errors.js';
import { messages } from '../../messages.js';
import { KeyLayout } from './key-layout.js';
import { SCRIPTS, type Scripts } from './scripts.js';
import { noAnswer, toLockError } from '../../store-errors.js';

/** Options of {@link checkRedisAccess}. */
export interface RedisAccessOptions {
  /** Bound of the whole check, in ms; past it the check fails with LockUnavailableError. */
  readonly timeoutMs: number;
  /** The last error the connection reported, named in the message when the server does not answer. */
  readonly lastError?: () => unknown;
  /** Also check `SCRIPT LOAD` (for a store that loads its scripts ahead). Default false. */
  readonly scriptLoad?: boolean;
  /** Commands the store sends outside its scripts, on a lock key. Default: none (every operation is a script). */
  readonly directCommands?: readonly string[];
  /** The scripts the store runs (default: the single-server set). */
  readonly scripts?: Scripts;
  /** The store uses sharded pub/sub (SSUBSCRIBE on a Cluster). Default false. */
  readonly sharded?: boolean;
}

const OPERATION = 'the Redis access check';
/** The caller's key of the probe: its names are `<prefix>{…}`, `…:q`, `…:c`, like any lock's. */
const PROBE_KEY = '__nestjs-redis-lock access probe__';

/**
 * Checks, without running any of them, which of the given commands the user may not run.
 * ARGV: groups of "<n>, arg1 … argn" (a command and its arguments). Replies the 1-based numbers of
 * the groups denied, or {-1} when the server has no redis.acl_check_cmd (Redis < 7).
 */
const PROBE = `
if not redis.acl_check_cmd then return {-1} end
local denied, i, group = {}, 1, 0
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local args = {}
  for j = 1, n do args[j] = ARGV[i + j] end
  group = group + 1
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(args))
  if ok and not allowed then denied[#denied + 1] = group end
  i = i + n + 1
end
return denied
`;
const PROBE_SHA = createHash('sha1').update(PROBE).digest('hex');

/** Commands that only read: a user denied only the others lacks write access to the prefix's keys. */
const READS = new Set([
  'GET',
  'MGET',
  'EXISTS',
  'PTTL',
  'TTL',
  'TYPE',
  'STRLEN',
  'ZRANGE',
  'ZRANK',
  'ZSCORE',
  'ZCARD',
  'ZCOUNT',
  'HGET',
  'TIME',
]);

interface Check {
  /** What the user may not do when this is denied, e.g. `run ZADD on "lock:{x}:q"`. */
  readonly command: string;
  readonly target?: string;
  readonly args: readonly string[];
}

/** The commands the Lua scripts call, from their sources, so the check follows the scripts. */
function scriptCommands(scripts: Scripts): string[] {
  const found = new Set<string>();
  for (const script of Object.values(scripts) as { source?: unknown }[]) {
    if (typeof script.source !== 'string') continue;
    for (const match of script.source.matchAll(/redis\.p?call\(\s*['"]([A-Za-z]+)['"]/g)) found.add(match[1]!.toUpperCase());
    // The publishing command is named once, as PUB.
    for (const match of script.source.matchAll(/local PUB = '([A-Z]+)'/g)) found.add(match[1]!);
  }
  return [...found].sort();
}

/**
 * Checks that the user of `client` may run what the Redis store needs on keys and channels under
 * `prefix`: the database it selects, EVALSHA and EVAL, every command of the lock scripts on the lock
 * and queue keys, PUBLISH, SUBSCRIBE and UNSUBSCRIBE on the lock channels. Leaves no key and no
 * subscription behind, and closes the one connection it opens (for SUBSCRIBE).
 *
 * @param client - the store's command connection (its `db`, `keyPrefix` and credentials are used).
 * @param prefix - the LockModule keyPrefix.
 * @throws LockStoreError code NOPERM naming the missing command, key or channel permission and an ACL
 *   rule that grants it; AUTH for refused credentials; DB for a database index the server refuses.
 * @throws LockUnavailableError when the server does not answer within `timeoutMs` (the message names
 *   the last connection error), or the connection fails.
 */
export async function checkRedisAccess(client: Redis, prefix: string, opts: RedisAccessOptions): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  const bounded = <T>(pending: Promise<T>): Promise<T> => within(pending, deadline, opts);
  const clientPrefix = client.options?.keyPrefix ?? '';
  const layout = new KeyLayout(prefix);
  const lock = layout.lock(PROBE_KEY);
  const queue = layout.queue(PROBE_KEY);
  // ioredis prefixes KEYS but neither ARGV nor channel names; what Redis sees is the prefixed name.
  const seen = (name: string) => clientPrefix + name;
  const channel = seen(layout.channel(PROBE_KEY));
  const keyPattern = `~${clientPrefix}${prefix}*`;
  const channelPattern = `&${clientPrefix}${prefix}*`;
  const refused = (needs: string, error: unknown, grant: string): LockStoreError => {
    const mapped = toLockError(OPERATION, error, [], opts.lastError?.());
    if (!(mapped instanceof LockStoreError) || mapped.code !== 'NOPERM') throw mapped;
    return new LockStoreError(messages.accessDenied(needs, reasonOf(mapped), grant), 'NOPERM', [], { cause: mapped.cause });
  };

  try {
    const db = Number(client.options?.db ?? 0);
    if (Number.isInteger(db) && db !== 0) {
      // ioredis sends SELECT on connect but only emits 'error' when it is refused, and then runs every
      // command in database 0. Sent again here, the refusal becomes an answer.
      await bounded(client.select(db)).catch((error: unknown) => {
        const mapped = toLockError(OPERATION, error, [], opts.lastError?.());
        if (mapped instanceof LockStoreError && mapped.code === 'DB') {
          throw new LockStoreError(messages.accessDb(db, reasonOf(mapped)), 'DB', [], { cause: mapped.cause });
        }
        if (mapped instanceof LockStoreError && mapped.code === 'NOPERM') throw refused(`run SELECT ${db}`, error, '+select');
        throw mapped;
      });
    }

    // EVALSHA first: NOSCRIPT means the command is allowed (the ACL check comes before the lookup).
    await bounded(client.evalsha(PROBE_SHA, 0)).catch((error: unknown) => {
      if (isNoScript(error)) return;
      throw refused('run EVALSHA', error, '+evalsha');
    });

    const checks: Check[] = [];
    for (const command of [...new Set([...scriptCommands(opts.scripts ?? SCRIPTS), ...(opts.directCommands ?? [])])]) {
      if (command === 'PUBLISH' || command === 'SPUBLISH') checks.push({ command, target: channel, args: [command, channel, ''] });
      else for (const key of [lock, queue]) checks.push({ command, target: seen(key), args: [command, seen(key)] });
    }
    const [sub, unsub] = opts.sharded ? ['SSUBSCRIBE', 'SUNSUBSCRIBE'] : ['SUBSCRIBE', 'UNSUBSCRIBE'];
    checks.push({ command: sub, target: channel, args: [sub, channel] }, { command: unsub, args: [unsub, channel] });
    if (opts.scriptLoad) checks.push({ command: 'SCRIPT LOAD', args: ['SCRIPT', 'LOAD', 'return 1'] });
    const argv = checks.flatMap((check) => [String(check.args.length), ...check.args]);
    const denied = (await bounded(client.eval(PROBE, 0, ...argv)).catch((error: unknown) => {
      throw refused('run EVAL', error, '+eval');
    })) as unknown[];
    const failures = denied.map(Number).filter((n) => n >= 1);
    if (failures.length > 0)
      throw deniedChecks(
        checks,
        failures.map((n) => checks[n - 1]!),
        keyPattern,
        channelPattern,
      );

    // The scripts get their keys as KEYS, and EVAL/EVALSHA need read and write on every one of them.
    await bounded(client.evalsha(PROBE_SHA, 2, lock, queue)).catch((error: unknown) => {
      if (isNoScript(error)) return;
      throw refused(`read and write keys matching "${clientPrefix}${prefix}*" (passed as KEYS to EVALSHA)`, error, keyPattern);
    });
    if (denied.length === 1 && Number(denied[0]) === -1) {
      // Redis < 7 cannot be asked: PUBLISH to a channel nobody listens to is the harmless real thing.
      await bounded(client.publish(channel, '')).catch((error: unknown) => {
        throw refused(`PUBLISH to channels matching "${clientPrefix}${prefix}*"`, error, `+publish ${channelPattern}`);
      });
    }

    // A Cluster client's duplicate cannot SUBSCRIBE through a check connection of its own the same way;
    // there the ACL answer above stands for it.
    if (!(client as { isCluster?: boolean }).isCluster) await checkSubscribe(client, channel, channelPattern, bounded, refused);
  } catch (error) {
    if (error instanceof LockError) throw error;
    throw toLockError(OPERATION, error, [], opts.lastError?.());
  }
}

/**
 * SUBSCRIBE and UNSUBSCRIBE on a connection of its own, as the store's subscriber does: this also finds
 * a proxy that does not pass pub/sub through. Without it waiters would only poll, so it is an error.
 */
async function checkSubscribe(
  client: Redis,
  channel: string,
  channelPattern: string,
  bounded: <T>(pending: Promise<T>) => Promise<T>,
  refused: (needs: string, error: unknown, grant: string) => LockStoreError,
): Promise<void> {
  const subscriber = client.duplicate({ lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true, autoResubscribe: false });
  subscriber.on('error', () => undefined);
  try {
    await bounded(subscriber.subscribe(channel)).catch((error: unknown) => {
      throw refused(`SUBSCRIBE to channels matching "${channelPattern.slice(1)}"`, error, `+subscribe ${channelPattern}`);
    });
    await bounded(subscriber.unsubscribe(channel)).catch((error: unknown) => {
      throw refused('run UNSUBSCRIBE', error, '+unsubscribe');
    });
  } finally {
    subscriber.disconnect();
  }
}

const isChannelCheck = (check: Check): boolean =>
  check.command === 'PUBLISH' || check.command === 'SPUBLISH' || check.command === 'SUBSCRIBE' || check.command === 'SSUBSCRIBE';
const isKeyCheck = (check: Check): boolean => check.target !== undefined && !isChannelCheck(check);

/**
 * One error for every denied check, grouped. redis.acl_check_cmd does not say whether the command or
 * the key was refused, so: every command refused on the keys means no access to the keys; only
 * writing commands refused means read-only keys; otherwise the refused commands are named.
 */
function deniedChecks(all: readonly Check[], denied: readonly Check[], keyPattern: string, channelPattern: string): LockStoreError {
  const onKeys = denied.filter(isKeyCheck);
  const onChannels = denied.filter(isChannelCheck);
  const targets = (checks: readonly Check[]) => [...new Set(checks.map((check) => JSON.stringify(check.target)))].join(', ');
  const parts: string[] = [];
  const grants = new Set<string>();
  const grant = (command: string) => grants.add(`+${command.toLowerCase().replace(' ', '|')}`);
  const keyCommands = [...new Set(onKeys.map((check) => check.command))];
  const keyCommandsOfScripts = new Set(all.filter(isKeyCheck).map((check) => check.command));
  const keyless = (command: string) => command === 'TIME';
  if (keyCommands.length > 1 && [...keyCommandsOfScripts].every((command) => keyless(command) || keyCommands.includes(command))) {
    parts.push(`read and write keys matching "${keyPattern.slice(1)}" (every command refused on ${targets(onKeys)})`);
    grants.add(keyPattern);
  } else if (keyCommands.length > 1 && keyCommands.every((command) => !READS.has(command))) {
    parts.push(`write keys matching "${keyPattern.slice(1)}" (${keyCommands.join(', ')} refused on ${targets(onKeys)})`);
    grants.add(keyPattern);
  } else if (keyCommands.length > 0) {
    parts.push(`run ${keyCommands.join(', ')} on ${targets(onKeys)}`);
    keyCommands.forEach(grant);
  }
  for (const check of onChannels) parts.push(`${check.command} to ${JSON.stringify(check.target)}`);
  // Both refused: most likely the channels are; one alone: most likely that command.
  if (onChannels.length === 1) grant(onChannels[0]!.command);
  if (onChannels.length > 0) grants.add(channelPattern);
  const other = denied.filter((check) => check.target === undefined).map((check) => check.command);
  if (other.length > 0) parts.push(`run ${other.join(', ')}`);
  other.forEach(grant);
  return new LockStoreError(
    messages.accessDenied(parts.join('; '), 'asked with redis.acl_check_cmd; nothing was run', [...grants].join(' ')),
    'NOPERM',
  );
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/** The Redis reason inside a mapped error's message: its cause's message (already redacted). */
function reasonOf(error: LockError): string {
  const cause = error.cause;
  const text = cause instanceof Error ? cause.message : error.message;
  return text.replace(/\s+script: \S+, on @\S+?\.?$/, '').replace(/\.+$/, '');
}

/** `pending`, or LockUnavailableError (naming the last connection error) once `deadline` has passed. */
function within<T>(pending: Promise<T>, deadline: number, opts: RedisAccessOptions): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(noAnswer(OPERATION, opts.timeoutMs, opts.lastError?.())), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([pending, timeout]).finally(() => clearTimeout(timer));
}
