-- gatekeep: sliding log. Exact: one timestamp per admitted unit of cost,
-- O(limit) memory. A request is admitted when fewer than limit - cost + 1
-- entries lie within the last period.
--
-- KEYS[i]      one list per limit: timestamps (µs), newest first, at most "limit" long
-- ARGV[2+2i]   limit: requests per sliding window
-- ARGV[3+2i]   period: the window length in microseconds
-- Returns      see _driver.lua: allowed, remaining, reset_after µs, retry_after µs

-- How many entries are newer than now - period (a binary search: newest first),
-- and the newest entry (or nil).
local function load(key, period)
  local horizon = now - period
  local lo, hi = 0, redis.call('LLEN', key)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if tonumber(redis.call('LINDEX', key, mid)) > horizon then lo = mid + 1 else hi = mid end
  end
  local head = nil
  if lo > 0 then head = tonumber(redis.call('LINDEX', key, 0)) end
  return lo, head
end

local function check(key, limit, period)
  local count, head = load(key, period)
  local allowed = count + cost <= limit
  local retry = 0
  if not allowed then
    if cost > limit then
      retry = -1
    else
      -- the entry whose expiry leaves room for this cost
      retry = tonumber(redis.call('LINDEX', key, limit - cost)) + period - now
    end
  end
  local reset = 0
  if head then reset = head + period - now end
  -- keep the log sorted even if the clock steps back
  local ts = math.max(now, head or now)
  local reset_hit = reset
  if cost > 0 then reset_hit = ts + period - now end
  return {allowed, limit - count, reset, retry, limit - count - cost, reset_hit,
          {ts, cost, count + cost}, reset_hit}
end

local function commit(key, c)
  local ts, keep = string.format('%d', c[STATE][1]), c[STATE][3]
  local batch = {}
  for _ = 1, cost do
    batch[#batch + 1] = ts
    if #batch == 1000 then  -- unpack() has a stack limit
      redis.call('LPUSH', key, unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then redis.call('LPUSH', key, unpack(batch)) end
  if keep == 0 then
    redis.call('DEL', key)
  else
    redis.call('LTRIM', key, 0, keep - 1)  -- drop expired entries
    redis.call('PEXPIRE', key, ms(c[TTL]))
  end
end

local function refund(key, limit, period)
  local count, head = load(key, period)
  local give = math.min(cost, count)
  if give == count then
    redis.call('DEL', key)
  elseif give > 0 then
    redis.call('LTRIM', key, give, count - 1)
  end
  count = count - give
  local reset = 0
  if count > 0 then reset = tonumber(redis.call('LINDEX', key, 0)) + period - now end
  if give > 0 and count > 0 then redis.call('PEXPIRE', key, ms(reset)) end
  return limit - count, reset
end
