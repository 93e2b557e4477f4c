-- gatekeep: leases, the part both concurrency scripts share (after _prelude.lua).
--
-- A lease set is a sorted set per key: member = a holder's lease id, score = when
-- its lease lapses (µs since the epoch, on the script's clock). A holder counts
-- until its lease lapses; a holder that died is gone then, never later. The key
-- lives until its last lease lapses (PEXPIRE, rounded up to whole ms).
-- Scores are passed as '%d' strings: a Lua number would go as '%.14g'.

local function us(x) return string.format('%d', x) end

-- Drop the lapsed leases of key; how many are held.
local function lease_live(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', us(now))
  return redis.call('ZCARD', key)
end

-- µs until the last lease lapses (0: none held).
local function lease_last(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last == 0 then return 0 end
  return tonumber(last[2]) - now
end

-- Take or extend lease id until now + ttl; the key lives until its last lease lapses.
-- Returns µs until then.
local function lease_put(key, id, ttl)
  redis.call('ZADD', key, us(now + ttl), id)
  local last = lease_last(key)
  redis.call('PEXPIRE', key, ms(last))
  return last
end

-- One lease's reply, as the driver's four integers: allowed, remaining slots,
-- reset_after (µs until the last lease lapses: ``last`` when the caller knows it),
-- retry_after (µs until the first lease lapses: a slot frees then at the latest;
-- 0 when allowed).
local function lease_reply(key, ok, held, limit, last)
  last = last or lease_last(key)
  if ok then return 1, limit - held, last, 0 end
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first == 0 then return 0, limit - held, last, 0 end
  return 0, limit - held, last, tonumber(first[2]) - now
end
