-- gatekeep: shared prelude, prepended to every limiter script when it is loaded.
--
-- ARGV[1]  now, integer microseconds since the epoch; '' to read the server's TIME
-- ARGV[2]  mode: 'hit' (consume), 'peek' (decide, change nothing) or 'refund' (give back)
-- ARGV[3]  cost, integer >= 0
-- ARGV[2+2i], ARGV[3+2i]  the two parameters of limit i (see each algorithm's header)
-- KEYS[i]  the key of limit i; all keys share one hash tag, so one cluster slot
-- Needs Redis >= 5 (or Valkey): scripts replicate their effects, so reading TIME
-- before writing is allowed.

local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local mode = ARGV[2]
local cost = tonumber(ARGV[3])

-- PEXPIRE/PX take milliseconds: round up, never 0.
local function ms(us)
  return math.max(1, math.ceil(us / 1000))
end

-- The fields of the table check() returns, by name (gatekeep/algorithms/_driver.py:
-- Check): allowed; remaining and reset_after µs as things are; retry_after µs (-1:
-- never); remaining and reset_after once committed; the state commit() writes, and
-- its lifetime in µs (the time until that state stops mattering).
local ALLOWED, REMAINING, RESET, RETRY, REMAINING_IF_HIT, RESET_IF_HIT, STATE, TTL =
  1, 2, 3, 4, 5, 6, 7, 8
