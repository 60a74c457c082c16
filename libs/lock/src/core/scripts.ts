import { createHash } from 'node:crypto';
import { TOKEN_LENGTH } from './token.js';

/**
 * Lua scripts of the Redis store. Lock values are "<token>:<fence>", tokens are TOKEN_LENGTH chars.
 * Fences are formatted with %.0f: Lua's tostring() would print 1.7e+15.
 * @internal
 */
const COMMON = `
local TL = ${TOKEN_LENGTH}
local function fmt(n) return string.format('%.0f', n) end
local function owned(v, tok) return v and string.sub(v, 1, TL) == tok end
-- Values are "<token>:<fence>", with "*" appended once someone queued for the key: only then does a
-- release need to look at the queue.
local function fenceOf(v) return string.match(v, ':(%d+)') end
local function flagged(v) return string.sub(v, -1) == '*' end
-- The fencing counter; when missing (first use, or lost in a restart without persistence)
-- it is seeded from the server clock in microseconds, so tokens keep increasing.
local function nextFence(fk)
  local f = redis.call('INCR', fk)
  if f == 1 then
    local t = redis.call('TIME')
    f = tonumber(t[1]) * 1000000 + tonumber(t[2])
    redis.call('SET', fk, fmt(f))
  end
  return fmt(f)
end
-- Hands the free lock lk to the oldest live waiter queued in qk and tells it on lk's channel.
-- A multi-key watcher at the head is woken instead and the lock stays free.
-- Entries whose wait ended before now are dropped. Returns true if the lock was handed over.
local function handoff(lk, qk, fk, now)
  for _ = 1, 10000 do
    local e = redis.call('ZPOPMIN', qk)
    if #e == 0 then return false end
    local tok, ttl, untl = string.match(e[1], '^(~?[^|]+)|(%d+)|(%d+)$')
    if tok and tonumber(untl) >= now then
      if string.sub(tok, 1, 1) == '~' then
        redis.call('PUBLISH', lk .. ':c', 'r')
        return false
      end
      local f = nextFence(fk)
      redis.call('SET', lk, tok .. ':' .. f .. '*', 'PX', ttl)
      redis.call('PUBLISH', lk .. ':c', 'g|' .. tok .. '|' .. f .. '|' .. fmt(now))
      return true
    end
  end
  return false
end
`;

/**
 * First attempt, not queued. KEYS: lock, queue, fence. ARGV: token, ttl, now.
 * Uncontended: EXISTS, INCR, SET NX (a busy lock costs a fencing number; tokens only need to increase).
 */
const ACQUIRE_PLAIN = `${COMMON}
local lk, qk, fk = KEYS[1], KEYS[2], KEYS[3]
local queued = redis.call('EXISTS', qk) == 1
if queued then
  -- waiters are queued: a lock that expired under them goes to the oldest live one, no barging
  if redis.call('EXISTS', lk) == 1 or handoff(lk, qk, fk, tonumber(ARGV[3])) then
    return {0, redis.call('PTTL', lk)}
  end
end
local f = nextFence(fk)
if redis.call('SET', lk, ARGV[1] .. ':' .. f .. (queued and '*' or ''), 'NX', 'PX', ARGV[2]) then return {1, f} end
return {0, redis.call('PTTL', lk)}
`;

/** Attempt of a waiter, joining the FIFO queue if busy. KEYS: lock, queue, fence. ARGV: token, ttl, member, now. */
const ACQUIRE_QUEUED = `${COMMON}
local lk, qk, fk = KEYS[1], KEYS[2], KEYS[3]
local tok, ttl, member, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local v = redis.call('GET', lk)
if v then
  if owned(v, tok) then
    -- handed to us while we were not listening: its ttl started then, so say how much is left
    redis.call('ZREM', qk, member)
    return {1, fenceOf(v), redis.call('PTTL', lk)}
  end
  redis.call('ZADD', qk, 'NX', now, member)
  if not flagged(v) then redis.call('SET', lk, v .. '*', 'KEEPTTL') end
  return {0, redis.call('PTTL', lk)}
end
-- free, but others may be queued (after an expiry): the oldest live waiter goes first
redis.call('ZADD', qk, 'NX', now, member)
if handoff(lk, qk, fk, now) then
  local w = redis.call('GET', lk)
  if owned(w, tok) then return {1, fenceOf(w)} end
  return {0, redis.call('PTTL', lk)}
end
redis.call('ZREM', qk, member)
local f = nextFence(fk)
redis.call('SET', lk, tok .. ':' .. f .. '*', 'PX', ttl)
return {1, f}
`;

/** All-or-nothing over n keys. KEYS: lock1..n, queue1..n, fence. ARGV: token, ttl, queue? (1/0), member, now. */
const ACQUIRE_MANY = `${COMMON}
local n = (#KEYS - 1) / 2
local tok, ttl, q, member, now = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5]
local busy, pttl = false, -1
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v then
    busy = true
    local p = redis.call('PTTL', KEYS[i])
    if p > pttl then pttl = p end
    if q then
      redis.call('ZADD', KEYS[n + i], 'NX', now, member)
      if not flagged(v) then redis.call('SET', KEYS[i], v .. '*', 'KEEPTTL') end
    end
  end
end
if busy then return {0, pttl} end
local f = nextFence(KEYS[#KEYS])
for i = 1, n do
  redis.call('SET', KEYS[i], tok .. ':' .. f .. '*', 'PX', ttl)
  if q then redis.call('ZREM', KEYS[n + i], member) end
end
return {1, f}
`;

/** KEYS: lock1..n, queue1..n, fence. ARGV: token, now. Returns 1 if every key was ours. */
const RELEASE = `${COMMON}
local n = (#KEYS - 1) / 2
local tok, now = ARGV[1], tonumber(ARGV[2])
local all = 1
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if owned(v, tok) then
    if not (flagged(v) and handoff(KEYS[i], KEYS[n + i], KEYS[#KEYS], now)) then redis.call('DEL', KEYS[i]) end
  else
    all = 0
  end
end
return all
`;

/** KEYS: lock1..n. ARGV: token, ttl. Never re-creates a key: PEXPIRE only on keys we own. */
const EXTEND = `${COMMON}
local tok = ARGV[1]
for i = 1, #KEYS do
  if not owned(redis.call('GET', KEYS[i]), tok) then return 0 end
end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return 1
`;

/** KEYS: lock, queue, fence. ARGV: now. */
const FORCE_RELEASE = `${COMMON}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if not handoff(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1])) then redis.call('DEL', KEYS[1]) end
return 1
`;

/** KEYS: lock1..n, queue1..n, fence. ARGV: token, member, now. 1 if a raced grant was released. */
const LEAVE = `${COMMON}
local n = (#KEYS - 1) / 2
local tok, member, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local got = 0
for i = 1, n do
  redis.call('ZREM', KEYS[n + i], member)
  if owned(redis.call('GET', KEYS[i]), tok) then
    got = 1
    if not handoff(KEYS[i], KEYS[n + i], KEYS[#KEYS], now) then redis.call('DEL', KEYS[i]) end
  end
end
return got
`;

/** KEYS: lock. ARGV: token. */
const INSPECT = `${COMMON}
local v = redis.call('GET', KEYS[1])
if owned(v, ARGV[1]) then return {1, fenceOf(v), redis.call('PTTL', KEYS[1])} end
return {0}
`;

export interface Script {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
}

const script = (name: string, source: string): Script => ({
  name,
  source,
  sha: createHash('sha1').update(source).digest('hex'),
});

export const SCRIPTS = {
  acquirePlain: script('acquirePlain', ACQUIRE_PLAIN),
  acquireQueued: script('acquireQueued', ACQUIRE_QUEUED),
  acquireMany: script('acquireMany', ACQUIRE_MANY),
  release: script('release', RELEASE),
  extend: script('extend', EXTEND),
  forceRelease: script('forceRelease', FORCE_RELEASE),
  leave: script('leave', LEAVE),
  inspect: script('inspect', INSPECT),
} as const;
