import { createHash } from 'node:crypto';
import { TOKEN_LENGTH } from '../../token.js';

/**
 * Lua scripts of the Redis store. Every script is safe to run twice (ioredis re-sends a command
 * whose reply was lost in a reconnect) and never compares one client's clock with another's: time
 * comes from the server (`TIME`), durations from the caller.
 *
 * The value of a lock key is `<token>:<fence>[:<previous token>][*]`: `*` once someone queued for
 * the key (a release then looks at the queue); the previous token is the holder that handed it over,
 * so its re-sent release still answers "ours". A released key is deleted. Anything else under a lock
 * key is foreign data: scripts refuse it (FOREIGN) and never change it.
 *
 * Fencing tokens: max(the slot's counter + 1, previous token of the key + 1, server time in µs), and
 * the counter is set to it (key-layout.ts names the counter of each slot). While a key is held its
 * value carries its token; when it is free, the replicated counter and the server clock keep the next
 * token above every earlier one.
 *
 * Queue members are "[~]<token>|<ttl>|<wait budget ms>", scored with the server time (µs) at which
 * they joined: FIFO by the server's clock. An entry is dead once score + budget has passed.
 * The queue key's expiry is kept at its latest entry's deadline, so a queue whose waiters all
 * crashed disappears by itself.
 * @internal
 */
/**
 * The Lua helpers the scripts share, each with the helpers it needs. A script includes only what it uses
 * ({@link lua}): Redis runs a script's whole text on every call, and every `local function` it defines is
 * a closure made anew each time, so a helper a script does not need is work on every call.
 */
const HELPERS = {
  TL: {
    needs: [],
    text: `
local TL = ${TOKEN_LENGTH}
`,
  },
  PUB: {
    needs: [],
    text: `
local PUB = '__PUB__'
`,
  },
  fmt: {
    needs: [],
    text: `
local function fmt(n) return string.format('%.0f', n) end
`,
  },
  clock: {
    needs: [],
    text: `
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
`,
  },
  parse: {
    needs: ['TL'],
    text: `
-- state, token, fence, previous token, queued flag; state is nil (absent), 'held' or 'foreign'
local function parse(v)
  if not v then return nil end
  local tok, f, rest = string.match(v, '^([%w_%-]+):(%d+)(.*)$')
  if not tok or #tok ~= TL then return 'foreign' end
  local prev, flag = '', false
  if rest == '*' then flag = true
  elseif rest ~= '' then
    local p, fl = string.match(rest, '^:([%w_%-]+)(%**)$')
    if not p or #p ~= TL or #fl > 1 then return 'foreign' end
    prev, flag = p, fl == '*'
  end
  return 'held', tok, tonumber(f), prev, flag
end
`,
  },
  foreign: {
    needs: [],
    text: `
local function foreign(k)
  return redis.error_reply('FOREIGN ' .. k .. ' holds a value that is not a lock of this library; it was left unchanged')
end
`,
  },
  fenceOver: {
    needs: ['fmt'],
    text: `
-- The next fencing token of a key whose previous token (from its value, when known) is prev:
-- above prev and above the slot's counter ck, and at least the server time; the counter keeps it.
-- With several counters (a multi-key lock), the one token is above every one of them.
local function fenceOver(cks, first, last, prev, now)
  local f = prev or 0
  for i = first, last do
    local c = tonumber(redis.call('GET', cks[i])) or 0
    if c > f then f = c end
  end
  if f >= now then f = f + 1 else f = now end
  for i = first, last do redis.call('SET', cks[i], fmt(f)) end
  return f
end
`,
  },
  nextFence: {
    needs: ['fmt'],
    text: `
-- The same for one counter (a single key), in one command: SET GET raises the counter and says what it
-- was; only when it was already at or past the new token (a failover to a server whose clock is behind)
-- is it raised again. max(prev + 1, now, counter + 1), as fenceOver.
local function nextFence(ck, prev, now)
  local f = now
  if prev and prev >= f then f = prev + 1 end
  local c = tonumber(redis.call('SET', ck, fmt(f), 'GET'))
  if c and c >= f then
    f = c + 1
    redis.call('SET', ck, fmt(f))
  end
  return f
end
`,
  },
  member: {
    needs: [],
    text: `
local function member(e)
  local multi, tok, ttl, budget = string.match(e, '^(~?)([%w_%-]+)|(%d+)|(%d+)$')
  return multi == '~', tok, ttl, tonumber(budget)
end
`,
  },
  join: {
    needs: [],
    text: `
-- Joins the queue (once per member) and keeps the queue key alive until the latest entry's deadline.
local function join(qk, m, budget, now)
  if redis.call('ZADD', qk, 'NX', now, m) == 1 and redis.call('PTTL', qk) < budget then
    redis.call('PEXPIRE', qk, budget)
  end
end
`,
  },
  handoff: {
    needs: ['member', 'nextFence', 'fmt', 'PUB'],
    text: `
-- Hands the free lock lk to the oldest live waiter of qk and tells it (and the two behind it, who
-- now watch the holder's expiry) on lk's channel. A multi-key watcher at the head is woken instead
-- and the lock stays free. Dead entries are dropped in bounded steps. Returns 1 handed over,
-- 0 queue empty, 2 multi-key watcher woken, 3 not finished (more dead entries to drop: call again).
local function handoff(lk, qk, ck, prevTok, prevFence, now)
  local win = 4
  for _ = 1, 3 do
    local e = redis.call('ZRANGE', qk, 0, win - 1, 'WITHSCORES')
    local n = #e / 2
    if n == 0 then return 0 end
    for i = 1, n do
      local multi, tok, ttl, budget = member(e[2 * i - 1])
      if tok and tonumber(e[2 * i]) + budget * 1000 >= now then
        redis.call('ZREMRANGEBYRANK', qk, 0, i - 1)
        if multi then
          redis.call(PUB, lk .. ':c', 'r')
          return 2
        end
        local f = nextFence(ck, prevFence, now)
        local held = tok .. ':' .. fmt(f)
        if prevTok ~= '' then held = held .. ':' .. prevTok end
        redis.call('SET', lk, held .. '*', 'PX', ttl)
        local _, n1 = member(e[2 * i + 1] or '')
        local _, n2 = member(e[2 * i + 3] or '')
        redis.call(PUB, lk .. ':c', 'g|' .. tok .. '|' .. fmt(f) .. '|' .. ttl .. '|' .. (n1 or '') .. '|' .. (n2 or ''))
        return 1
      end
    end
    redis.call('ZREMRANGEBYRANK', qk, 0, n - 1)
    if n < win then return 0 end
    win = 100
  end
  return 3
end
`,
  },
  free: {
    needs: ['handoff', 'clock', 'PUB'],
    text: `
-- Frees lk held by tok: hands it to the next waiter if someone queued, else deletes it (and, for a
-- store without queues (a quorum node), says so on the channel: its waiters retry).
-- Returns true if more dead queue entries are left to drop (HANDOFF).
local function free(lk, qk, ck, tok, f, flagged, announce)
  local h = 0
  if flagged then
    h = handoff(lk, qk, ck, tok, f, clock())
    if h == 1 then return false end
  end
  redis.call('DEL', lk)
  -- h == 2: the multi-key watcher at the head was already told
  if announce and h ~= 2 then redis.call(PUB, lk .. ':c', 'r') end
  return h == 3
end
`,
  },
  ours: {
    needs: [],
    text: `
-- The token already holds lk (a re-sent or earlier attempt): rewrite its ttl unchanged, so that this
-- answer is a write of this connection too (a WAIT after it then proves the lock reached the replicas).
-- Returns the ttl left.
local function ours(lk)
  local p = redis.call('PTTL', lk)
  if p > 0 then redis.call('PEXPIRE', lk, p) end
  return p
end
`,
  },
} as const satisfies Record<string, { readonly needs: readonly string[]; readonly text: string }>;

type Helper = keyof typeof HELPERS;
const HELPER_ORDER = Object.keys(HELPERS) as Helper[];

/** The text of the helpers `uses` and the ones they need, in their order above, less those in scope already. */
function helpers(uses: readonly Helper[], inScope: readonly Helper[] = []): string {
  const wanted = new Set<Helper>();
  const add = (name: Helper): void => {
    if (wanted.has(name)) return;
    wanted.add(name);
    for (const need of HELPERS[name].needs) add(need as Helper);
  };
  uses.forEach(add);
  return HELPER_ORDER.filter((name) => wanted.has(name) && !inScope.includes(name))
    .map((name) => HELPERS[name].text)
    .join('');
}

/** A script's text: the helpers it `uses` (and the ones they need), then its body. */
function lua(uses: readonly Helper[], body: string): string {
  return helpers(uses) + body;
}

/**
 * First attempt, not queued. KEYS: lock, queue, fence counter. ARGV: token, ttl[, proposed token (a quorum's)].
 * Reply {1, fence} acquired now; {1, fence, pttl} already ours (a re-sent or earlier attempt);
 * {0, pttl, fence} busy (fence -1 when unknown). Uncontended: EXISTS, TIME, SET NX, SET GET (the
 * counter): the token is the server time unless the counter is already past it (then one more SET).
 * Only the uncontended path runs at the top level: the helpers of the other paths are defined inside
 * `slow()`, so an uncontended call does not make their closures (about 40% of its Redis time).
 */
const ACQUIRE_PLAIN = lua(
  ['fmt', 'clock'],
  `
local lk, qk, ck, tok, ttl = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
-- The other paths: busy (queued is false), or waiters are queued (queued is true): then a free lock
-- goes to the oldest live one, no barging; returns a reply, or nil and the flag to take the lock with.
local function slow(queued)
${helpers(['parse', 'foreign', 'handoff', 'ours'], ['fmt', 'clock'])}
  local function busy()
    local st, ht, hf = parse(redis.call('GET', lk))
    if st == 'foreign' then return foreign(lk) end
    if st == 'held' and ht == tok then return {1, fmt(hf), ours(lk)} end
    return {0, redis.call('PTTL', lk), hf and fmt(hf) or '-1'}
  end
  if not queued or redis.call('EXISTS', lk) == 1 then return busy() end
  local h = handoff(lk, qk, ck, '', nil, clock())
  if h == 1 or h == 3 then return busy() end
  -- a multi-key watcher was woken and others may still be queued: the release must look at the queue
  if h == 2 then return nil, '*' end
  return nil, ''
end
local flag = ''
if redis.call('EXISTS', qk) == 1 then
  local reply, taken = slow(true)
  if reply then return reply end
  flag = taken
end
local f = clock()
-- a quorum's proposed token (ARGV[3]): taken when above the clock, so that every node of a majority issues the same one
local floor = tonumber(ARGV[3])
if floor and floor > f then f = floor end
local fs = fmt(f)
if not redis.call('SET', lk, tok .. ':' .. fs .. flag, 'NX', 'PX', ttl) then return slow(false) end
local c = tonumber(redis.call('SET', ck, fs, 'GET'))
if c and c >= f then
  -- the slot's counter is ahead of this server's clock (a failover to a server whose clock is behind)
  f = c + 1
  fs = fmt(f)
  redis.call('SET', ck, fs)
  redis.call('SET', lk, tok .. ':' .. fs .. flag, 'PX', ttl)
end
return {1, fs}
`,
);

/**
 * Attempt of a waiter, joining the FIFO queue if busy. KEYS: lock, queue, fence counter. ARGV: token, ttl, member, budget ms.
 * Replies as ACQUIRE_PLAIN; busy adds the waiter's 0-based rank in the queue: {0, pttl, fence, rank}.
 * The key is free here when the script gets past the first branch.
 */
const ACQUIRE_QUEUED = lua(
  ['fmt', 'clock', 'parse', 'foreign', 'nextFence', 'join', 'handoff', 'ours'],
  `
local lk, qk, ck, tok, ttl, m, budget = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local v = redis.call('GET', lk)
local st, ht, hf, _, flag = parse(v)
if st == 'foreign' then return foreign(lk) end
if st == 'held' then
  if ht == tok then
    -- handed to us while we were not listening (or a re-sent attempt): say how much of its ttl is left
    redis.call('ZREM', qk, m)
    return {1, fmt(hf), ours(lk)}
  end
  join(qk, m, budget, clock())
  if not flag then redis.call('SET', lk, v .. '*', 'KEEPTTL') end
  return {0, redis.call('PTTL', lk), fmt(hf), redis.call('ZRANK', qk, m)}
end
local now = clock()
if redis.call('EXISTS', qk) == 1 then
  -- free, but others are queued (after an expiry): the oldest live waiter goes first
  join(qk, m, budget, now)
  local h = handoff(lk, qk, ck, '', hf, now)
  if h == 1 then
    local _, wt, wf = parse(redis.call('GET', lk))
    if wt == tok then return {1, fmt(wf)} end
    return {0, redis.call('PTTL', lk), fmt(wf), redis.call('ZRANK', qk, m)}
  end
  -- a multi-key watcher was woken, or more dead entries are left: retry soon
  if h ~= 0 then return {0, 0, '-1', redis.call('ZRANK', qk, m)} end
end
local f = nextFence(ck, hf, now)
redis.call('SET', lk, tok .. ':' .. fmt(f), 'PX', ttl)
return {1, fmt(f)}
`,
);

/**
 * All-or-nothing over n keys (in one slot on Cluster). KEYS: lock1..n, queue1..n, counter1..n. ARGV: token, ttl, queue? (1/0), member, budget[, proposed token].
 * Multi-key waiters register as watchers ("~" members) and compete when woken.
 */
const ACQUIRE_MANY = lua(
  ['fmt', 'clock', 'parse', 'foreign', 'fenceOver', 'join', 'ours'],
  `
local n = #KEYS / 3
local tok, ttl, q, m, budget = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4], tonumber(ARGV[5])
local busy, pttl, mine, minOurs, top = false, -1, 0, -1, nil
local states = {}
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  local st, ht, hf, _, flag = parse(v)
  if st == 'foreign' then return foreign(KEYS[i]) end
  states[i] = hf
  if st == 'held' and ht == tok then
    mine = mine + 1
    local p = ours(KEYS[i])
    if minOurs < 0 or p < minOurs then minOurs = p end
  elseif st == 'held' then
    busy = true
    local p = redis.call('PTTL', KEYS[i])
    if p > pttl then pttl = p end
    if q then
      join(KEYS[n + i], m, budget, clock())
      if not flag then redis.call('SET', KEYS[i], v .. '*', 'KEEPTTL') end
    end
  end
  if hf and (not top or hf > top) then top = hf end
end
if mine == n then return {1, fmt(top), minOurs} end
if busy then return {0, pttl, '-1'} end
-- every key is free or already ours (an earlier attempt of this token whose other keys were lost)
local now = clock()
-- a quorum's proposed token (ARGV[6]), as in ACQUIRE_PLAIN
local floor = tonumber(ARGV[6])
if floor and floor > now then now = floor end
local f = fenceOver(KEYS, 2 * n + 1, 3 * n, top, now)
for i = 1, n do
  redis.call('SET', KEYS[i], tok .. ':' .. fmt(f) .. '*', 'PX', ttl)
  if q then redis.call('ZREM', KEYS[n + i], m) end
end
return {1, fmt(f)}
`,
);

/**
 * KEYS: lock1..n, queue1..n, counter1..n. ARGV: token, announce (1: publish "released"). Reply: 1 if no key is held by another owner (each was ours,
 * or was handed on by us: a re-sent release), + 2 when dead queue entries are left for HANDOFF,
 * + 4 when some key was absent (the engine decides: ours if the answer came within its validity).
 */
const RELEASE = lua(
  ['TL', 'PUB'],
  `
local tok, announce = ARGV[1], ARGV[2] == '1'
-- One key held as "<token>:<fence>" (nobody queued, not handed over): delete it. Else the general path,
-- with its helpers defined only then; v is the first key's value already read (false: none).
local v = redis.call('GET', KEYS[1])
if #KEYS == 3 and v and string.sub(v, 1, TL + 1) == tok .. ':' and string.find(v, '^%d+$', TL + 2) then
  redis.call('DEL', KEYS[1])
  if announce then redis.call(PUB, KEYS[1] .. ':c', 'r') end
  return 1
end
local function slow()
${helpers(['parse', 'free'], ['TL', 'PUB'])}
  local n = #KEYS / 3
  local all, more, absent = 1, 0, 0
  for i = 1, n do
    if i > 1 then v = redis.call('GET', KEYS[i]) end
    local st, ht, hf, prev, flag = parse(v)
    if st == 'held' and ht == tok then
      if free(KEYS[i], KEYS[n + i], KEYS[2 * n + i], tok, hf, flag, announce) then more = 2 end
    elseif st == nil then
      absent = 4
    elseif not (st == 'held' and prev == tok) then
      all = 0
    end
  end
  return all + more + absent
end
return slow()
`,
);

/** KEYS: lock1..n. ARGV: token, ttl. Never re-creates a key: PEXPIRE only on keys we own. */
const EXTEND = lua(
  ['parse'],
  `
local tok = ARGV[1]
for i = 1, #KEYS do
  local st, ht = parse(redis.call('GET', KEYS[i]))
  if st ~= 'held' or ht ~= tok then return 0 end
end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return 1
`,
);

/** KEYS: lock. The token holding it, or nil. Refuses foreign data. */
const HOLDER = lua(
  ['parse', 'foreign'],
  `
local st, ht = parse(redis.call('GET', KEYS[1]))
if st == 'foreign' then return foreign(KEYS[1]) end
if st == 'held' then return ht end
return false
`,
);

/**
 * Compare-and-delete, so that running it twice never frees the next holder too. KEYS: lock, queue, counter.
 * ARGV: the holder's token (from HOLDER), announce. 1 if that holder's lock was freed (+2: HANDOFF needed).
 */
const FORCE_RELEASE = lua(
  ['parse', 'foreign', 'free'],
  `
local lk, qk, ck = KEYS[1], KEYS[2], KEYS[3]
local st, ht, hf, _, flag = parse(redis.call('GET', lk))
if st == 'foreign' then return foreign(lk) end
if st == 'held' and ht == ARGV[1] then
  if free(lk, qk, ck, '', hf, flag or redis.call('EXISTS', qk) == 1, ARGV[2] == '1') then return 3 end
  return 1
end
return 0
`,
);

/**
 * Continues a hand-off that had more dead entries to drop than one script may take. KEYS: lock, queue, counter.
 * Reply as handoff(): 1 handed over (or the key is held), 0 queue empty, 2 multi-key watcher woken, 3 call again.
 */
const HANDOFF = lua(
  ['clock', 'parse', 'foreign', 'handoff'],
  `
local lk, qk, ck = KEYS[1], KEYS[2], KEYS[3]
local st = parse(redis.call('GET', lk))
if st == 'foreign' then return foreign(lk) end
if st == 'held' then return 1 end
return handoff(lk, qk, ck, '', nil, clock())
`,
);

/**
 * KEYS: lock1..n, queue1..n, counter1..n. ARGV: token, member, announce. Leaves the queues and gives back any key
 * this token holds (a grant that raced with giving up, or an attempt whose answer was lost).
 * Tells the two waiters now at the head when the leaver was one of the first two.
 * Reply: 1 if a key was given back, + 2 when HANDOFF is needed.
 */
const LEAVE = lua(
  ['PUB', 'parse', 'member', 'free'],
  `
local n = #KEYS / 3
local tok, m, announce = ARGV[1], ARGV[2], ARGV[3] == '1'
local got, more = 0, 0
for i = 1, n do
  local qk = KEYS[n + i]
  local r = redis.call('ZRANK', qk, m)
  if r then
    redis.call('ZREM', qk, m)
    if r < 2 then
      local e = redis.call('ZRANGE', qk, 0, 1)
      if #e > 0 then
        local _, t1 = member(e[1])
        local _, t2 = member(e[2] or '')
        redis.call(PUB, KEYS[i] .. ':c', 'n|' .. (t1 or '') .. '|' .. (t2 or ''))
      end
    end
  end
  local st, ht, hf, _, flag = parse(redis.call('GET', KEYS[i]))
  if st == 'held' and ht == tok then
    got = 1
    if free(KEYS[i], qk, KEYS[2 * n + i], tok, hf, flag, announce) then more = 2 end
  end
end
return got + more
`,
);

/** KEYS: lock. ARGV: token. {1, fence, pttl} when `token` holds it. */
const INSPECT = lua(
  ['fmt', 'parse', 'foreign'],
  `
local st, ht, hf = parse(redis.call('GET', KEYS[1]))
if st == 'foreign' then return foreign(KEYS[1]) end
if st == 'held' and ht == ARGV[1] then return {1, fmt(hf), redis.call('PTTL', KEYS[1])} end
return {0}
`,
);

/**
 * Quorum mode: after a majority took the lock, its token is the highest of theirs, written back to
 * them so that any later majority (which shares a node with this one) issues a higher one.
 * KEYS: lock1..n, counter1..n. ARGV: token, fence. Raises each counter to the fence and puts the fence
 * into each lock value this token holds (also into a higher one, from a node whose answer came after
 * the majority's: the lock has one token everywhere). Reply: 1 if the token holds every key.
 */
const RAISE = lua(
  ['fmt', 'parse'],
  `
local n = #KEYS / 2
local tok, f = ARGV[1], tonumber(ARGV[2])
local all = 1
for i = 1, n do
  local ck = KEYS[n + i]
  if (tonumber(redis.call('GET', ck)) or 0) < f then redis.call('SET', ck, fmt(f)) end
  local v = redis.call('GET', KEYS[i])
  local st, ht, hf = parse(v)
  if st == 'held' and ht == tok then
    if hf ~= f then redis.call('SET', KEYS[i], tok .. ':' .. fmt(f) .. string.sub(v, #tok + 2 + #fmt(hf)), 'KEEPTTL') end
  else
    all = 0
  end
end
return all
`,
);

/** KEYS: lock. 1 if someone holds it. */
const IS_LOCKED = lua(
  ['parse', 'foreign'],
  `
local st = parse(redis.call('GET', KEYS[1]))
if st == 'foreign' then return foreign(KEYS[1]) end
if st == 'held' then return 1 end
return 0
`,
);

/**
 * An idempotency record, written only while the call that made it still holds its lease (the lock):
 * a call that lost its lease (paused past its ttl) never overwrites the record of the call that took
 * over. KEYS: lock, record. ARGV: token, value, ttl. Reply: 1 stored, 0 not the holder.
 */
const PUT_RECORD = lua(
  ['parse'],
  `
local st, ht = parse(redis.call('GET', KEYS[1]))
if st ~= 'held' or ht ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
`,
);

/** KEYS: record. Its value, or nil. */
const GET_RECORD = `return redis.call('GET', KEYS[1])`;

/** One Lua script with its SHA1 (for EVALSHA). */
export interface Script {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
}

const SOURCES = {
  acquirePlain: ACQUIRE_PLAIN,
  acquireQueued: ACQUIRE_QUEUED,
  acquireMany: ACQUIRE_MANY,
  release: RELEASE,
  extend: EXTEND,
  holder: HOLDER,
  forceRelease: FORCE_RELEASE,
  handoff: HANDOFF,
  leave: LEAVE,
  raise: RAISE,
  inspect: INSPECT,
  isLocked: IS_LOCKED,
  putRecord: PUT_RECORD,
  getRecord: GET_RECORD,
} as const;

/** The scripts of one store. */
export type Scripts = { readonly [name in keyof typeof SOURCES]: Script };

/**
 * The scripts, publishing with PUBLISH (one server, Sentinel, and Cluster without sharded pub/sub) or
 * SPUBLISH (Cluster: the message stays on the shard of the key's slot instead of reaching every node).
 */
function scriptSet(publish: 'PUBLISH' | 'SPUBLISH'): Scripts {
  const out: Record<string, Script> = {};
  for (const [name, text] of Object.entries(SOURCES)) {
    const source = text.replaceAll("'__PUB__'", `'${publish}'`);
    out[name] = { name, source, sha: createHash('sha1').update(source).digest('hex') };
  }
  return out as Scripts;
}

export const SCRIPTS = scriptSet('PUBLISH');
export const SHARDED_SCRIPTS = scriptSet('SPUBLISH');
