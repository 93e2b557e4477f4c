-- gatekeep: sliding log. Exact: one timestamp per admitted unit of cost,
-- O(limit) memory. A request is admitted when fewer than limit - cost + 1
-- entries lie within the last period.
--
-- KEYS[i]      one list per limit: timestamps (µs), newest first, at most "limit" long
-- ARGV[2+2i]   limit: requests per sliding window
-- ARGV[3+2i]   period: the window length in microseconds
-- Returns      see _driver.lua: allowed, remaining, reset_after µs, retry_after µs

-- How many entries are newer than now - period, the newest entry (or nil) and the
-- list's length. The oldest entry is read first: when it is live, every entry is
-- (the common case: commit trims the expired ones); else a binary search, newest first.
local function load(key, period)
  local n = redis.call('LLEN', key)
  if n == 0 then return 0, nil, 0 end
  local horizon = now - period
  local last = tonumber(redis.call('LINDEX', key, n - 1))
  if n == 1 then
    if last > horizon then return 1, last, 1 end
    return 0, nil, 1
  end
  local lo, hi = n, n
  if last <= horizon then
    lo, hi = 0, n - 1
    while lo < hi do
      local mid = floor((lo + hi) / 2)
      if tonumber(redis.call('LINDEX', key, mid)) > horizon then lo = mid + 1 else hi = mid end
    end
  end
  if lo == 0 then return 0, nil, n end
  return lo, tonumber(redis.call('LINDEX', key, 0)), n
end

local function check(key, limit, period)
  local count, head, n = load(key, period)
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
  local ts = now
  if head and head > now then ts = head end
  local reset_hit = reset
  if cost > 0 then reset_hit = ts + period - now end
  return allowed, limit - count, reset, retry, limit - count - cost, reset_hit,
         reset_hit, ts, cost, count + cost, n
end

-- n: the list's length before; when every entry was live (n == count), the pushed
-- list holds exactly "keep" entries and needs no LTRIM.
local function commit(key, ttl, ts, cost, keep, n)
  if keep == 0 then
    redis.call('DEL', key)
    return
  end
  ts = string.format('%d', ts)
  local batch = {}
  for _ = 1, cost do
    batch[#batch + 1] = ts
    if #batch == 1000 then  -- unpack() has a stack limit
      redis.call('LPUSH', key, unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then redis.call('LPUSH', key, unpack(batch)) end
  if n + cost > keep then redis.call('LTRIM', key, 0, keep - 1) end  -- drop expired entries
  redis.call('PEXPIRE', key, ms(ttl))
end

local function refund(key, limit, period)
  local count, head, n = load(key, period)
  local give = cost
  if give > count then give = count end
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
