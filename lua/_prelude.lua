-- gatekeep: shared prelude, prepended to every limiter script when it is loaded.
--
-- ARGV[1]  now, integer microseconds since the epoch; '' to read the server's TIME
-- ARGV[2]  mode: 'hit' (consume), 'peek' (decide, change nothing), 'refund' (give back)
--          or 'charge' (consume even beyond the limit: see _driver.lua)
-- ARGV[3]  cost, integer >= 0
-- ARGV[2+2i], ARGV[3+2i]  the two parameters of limit i (see each algorithm's header)
-- KEYS[i]  the key of limit i; all keys share one hash tag, so one cluster slot
-- Needs Redis >= 5 (or Valkey): scripts replicate their effects, so reading TIME
-- before writing is allowed.
--
-- Each algorithm defines check(key, a, b), which returns (as values, not a table:
-- a table per call costs server time) allowed; remaining and reset_after µs as
-- things are; retry_after µs (-1: never); remaining and reset_after once committed;
-- then the lifetime in µs of the state a commit writes (the time until that state
-- stops mattering), and that state (one to four values). commit(key, ttl, state...)
-- writes it; refund(key, a, b) gives cost back. gatekeep/algorithms/_driver.py:
-- Check names the same fields.

local now = tonumber(ARGV[1])
-- On the server's clock a window's end stays where it is: a write within a window
-- whose key already lives until that end may keep its TTL (SET KEEPTTL, Redis >= 6,
-- a third of the cost of SET PX). REDIS_VERSION_NUM is there from Redis 7.0 on.
-- With a clock of the caller's, every write sets its TTL.
local keepttl = false
if not now then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
  keepttl = redis.REDIS_VERSION_NUM ~= nil
end
local mode = ARGV[2]
local cost = tonumber(ARGV[3])
local floor = math.floor

-- PEXPIRE/PX take milliseconds: round up, never 0.
local function ms(us)
  local m = math.ceil(us / 1000)
  if m < 1 then return 1 end
  return m
end
