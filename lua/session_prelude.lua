-- gatekeep: sessions, shared prelude: the helpers, prepended (after session_clock.lua)
-- to every session script but session_peek.lua, which needs none of them: each one is
-- a closure made anew on every call (the eight together: 1-2 µs of the server per call
-- on Redis 7.0).
--
-- KEYS[1]  the session (or user index) key of the script that follows
-- ARGV[1]  now (see session_clock.lua, which defines `now` from it)
-- Returns  nothing: it defines ms(), fmt(), is_data(), each(), judge(), meta(), touch()
--          and bury()

-- PEXPIRE takes milliseconds: round up, never 0.
local function ms(us)
  return math.max(1, math.ceil(us / 1000))
end

local function fmt(n)
  return string.format('%d', n)
end

-- Whether a hash field holds data: 'd:' .. key (100 and 58 are 'd' and ':').
local function is_data(f)
  return string.byte(f, 2) == 58 and string.byte(f, 1) == 100
end

-- redis.call(cmd, key, ...list), in as few calls as unpack() allows (none for an
-- empty list); for HSET, `list` is pairs and each call takes whole pairs.
local function each(cmd, key, list)
  for i = 1, #list, 4000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 3999, #list)))
  end
end

-- The state of the session at `key` from its fields t, c, a, x (text, or nil/false when
-- absent): 'none', 'dead' or 'live', then c, a, x as numbers. A session past its idle or
-- absolute expiry reads as 'none', and is deleted unless `ro` (a read-only call:
-- EVALSHA_RO, a replica; its PEXPIRE removes it in due time).
local function judge(key, idle, ro, t, c, a, x)
  if t then
    if tonumber(t) <= now then
      if not ro then redis.call('DEL', key) end
      return 'none'
    end
    return 'dead'
  end
  if not c then return 'none' end
  c, a, x = tonumber(c), tonumber(a), tonumber(x)
  if x <= now or now - a >= idle then
    if not ro then redis.call('DEL', key) end
    return 'none'
  end
  return 'live', c, a, x
end

-- The metadata of the session at `key` (one HMGET, no data): judge()'s, then u and i
-- (the idle timeout of the last touch, µs, as text).
local function meta(key, idle, ro)
  local m = redis.call('HMGET', key, 't', 'c', 'a', 'x', 'u', 'i')
  local state, c, a, x = judge(key, idle, ro, m[1], m[2], m[3], m[4])
  return state, c, a, x, m[5], m[6]
end

-- Bring a live session's idle deadline forward to now; returns the new last-seen time.
-- i records the idle timeout its TTL was set with (see session_save.lua's lazy touch).
local function touch(key, a, x, idle)
  local seen = math.max(a, now)
  redis.call('HSET', key, 'a', fmt(seen), 'i', fmt(idle))
  redis.call('PEXPIRE', key, ms(math.min(seen + idle, x) - now))
  return seen
end

-- Replace the session at `key` by a tombstone until `till` (nothing when till <= now).
local function bury(key, till)
  redis.call('DEL', key)
  if till > now then
    redis.call('HSET', key, 't', fmt(till))
    redis.call('PEXPIRE', key, ms(till - now))
  end
end
