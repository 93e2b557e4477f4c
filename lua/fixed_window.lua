-- gatekeep: fixed window. At most "limit" per window of "period", windows
-- aligned on multiples of the period since the epoch.
--
-- KEYS[i]      one string per limit: "<window start µs> <count>"
-- ARGV[2+2i]   limit: requests per window
-- ARGV[3+2i]   period: the window length in microseconds
-- Returns      see _driver.lua: allowed, remaining, reset_after µs, retry_after µs

-- The common call (one limit, a hit) inlined: check and commit below, the same
-- arithmetic, without the calls and closures that cost server time on every call
-- (their definitions below are not reached then). The twin tests cover both paths.
if mode == 'hit' and #KEYS == 1 then
  local key, limit = KEYS[1], tonumber(ARGV[4])
  local period = tonumber(ARGV[5])
  local start = floor(now / period) * period
  local count = 0
  local v = redis.call('GET', key)
  if v then
    local s, c = string.match(v, '^(%d+) (%d+)$')
    if tonumber(s) == start then count = tonumber(c) end
  end
  local ends_in = start + period - now
  if count + cost <= limit then
    local reset_hit = 0
    if count + cost > 0 then reset_hit = ends_in end
    v = string.format('%d %d', start, count + cost)
    if keepttl and count > 0 then
      redis.call('SET', key, v, 'KEEPTTL')
    else
      redis.call('SET', key, v, 'PX', ms(reset_hit))
    end
    return {1, limit - count - cost, reset_hit, 0}
  end
  local reset, retry = 0, ends_in
  if count > 0 then reset = ends_in end
  if cost > limit then retry = -1 end
  return {0, limit - count, reset, retry}
end

local function load(key, period)
  local start = floor(now / period) * period
  local v = redis.call('GET', key)
  if v then
    local s, count = string.match(v, '^(%d+) (%d+)$')
    if tonumber(s) == start then return start, tonumber(count) end
  end
  return start, 0
end

local function check(key, limit, period)
  local start, count = load(key, period)
  local ends_in = start + period - now
  local reset, reset_hit = 0, 0
  if count > 0 then reset = ends_in end
  if count + cost > 0 then reset_hit = ends_in end
  local retry = 0
  if count + cost > limit then
    if cost > limit then retry = -1 else retry = ends_in end
  end
  return retry == 0, limit - count, reset, retry,
         limit - count - cost, reset_hit, reset_hit, start, count + cost
end

-- A key that held a count of this window lives until the window's end already.
local function commit(key, ttl, start, count)
  local v = string.format('%d %d', start, count)
  if keepttl and count > cost then
    redis.call('SET', key, v, 'KEEPTTL')
  else
    redis.call('SET', key, v, 'PX', ms(ttl))
  end
end

local function refund(key, limit, period)
  local start, count = load(key, period)
  count = count - cost
  local reset = 0
  if count <= 0 then
    count = 0
    redis.call('DEL', key)
  else
    reset = start + period - now
    redis.call('SET', key, string.format('%d %d', start, count), 'PX', ms(reset))
  end
  return limit - count, reset
end
