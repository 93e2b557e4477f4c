-- gatekeep: token bucket (the default). Capacity = burst, continuous refill.
--
-- KEYS[i]      one string per limit: "<level> <ts>"
-- ARGV[2+2i]   interval: microseconds per token (ceil(period / limit))
-- ARGV[3+2i]   burst: the capacity in tokens
-- Returns      see _driver.lua: allowed, remaining, reset_after µs, retry_after µs
--
-- The bucket's content is kept as microseconds of refill ("level" = tokens x
-- interval), so refill is one microsecond per microsecond and every number is
-- an exact integer. "ts" is when the level was last brought up to date.

local function load(key, interval, burst)
  local capacity = burst * interval
  local v = redis.call('GET', key)
  if not v then return capacity, now end
  local level, ts = string.match(v, '^(%d+) (%d+)$')
  level, ts = tonumber(level), tonumber(ts)
  level = math.min(capacity, level + math.max(0, now - ts))
  return level, math.max(ts, now)
end

local function check(key, interval, burst)
  local capacity = burst * interval
  local level, ts = load(key, interval, burst)
  local need = cost * interval
  local allowed = need <= level
  local retry = 0
  if not allowed then
    if cost > burst then retry = -1 else retry = need - level end
  end
  local left = level - need
  return {allowed, math.floor(level / interval), capacity - level, retry,
          math.floor(left / interval), capacity - left, {left, ts}, capacity - left}
end

local function commit(key, c)
  redis.call('SET', key, string.format('%d %d', c[STATE][1], c[STATE][2]), 'PX', ms(c[TTL]))
end

local function refund(key, interval, burst)
  local capacity = burst * interval
  local level, ts = load(key, interval, burst)
  level = math.min(capacity, level + cost * interval)
  if level == capacity then
    redis.call('DEL', key)  -- a full bucket is the same as no bucket
  else
    redis.call('SET', key, string.format('%d %d', level, ts), 'PX', ms(capacity - level))
  end
  return math.floor(level / interval), capacity - level
end
