-- gatekeep: token bucket (the default). Capacity = burst, continuous refill.
--
-- KEYS[i]      one string per limit: "<level> <ts>"
-- ARGV[2+2i]   interval: microseconds per token (ceil(period / limit))
-- ARGV[3+2i]   burst: the capacity in tokens
-- Returns      see _driver.lua: allowed, remaining, reset_after µs, retry_after µs
--
-- The bucket's content is kept as microseconds of refill ("level" = tokens x
-- interval), so refill is one microsecond per microsecond and every number is
-- an exact integer. "ts" is when the level was last brought up to date. A level
-- below zero is a debt (mode 'charge'): refill pays it off before a hit fits.

-- The common call (one limit, a hit) inlined: check and commit below, the same
-- arithmetic, without the calls and closures that cost server time on every call
-- (their definitions below are not reached then). The twin tests cover both paths.
if mode == 'hit' and #KEYS == 1 then
  local key, interval = KEYS[1], tonumber(ARGV[4])
  local burst = tonumber(ARGV[5])
  local capacity = burst * interval
  local level, ts = capacity, now
  local v = redis.call('GET', key)
  if v then
    local l, t = string.match(v, '^(-?%d+) (%d+)$')
    level, ts = tonumber(l), tonumber(t)
    if ts < now then
      level = level + now - ts
      if level > capacity then level = capacity end
      ts = now
    end
  end
  local need = cost * interval
  if need <= level then
    local left = level - need
    redis.call('SET', key, string.format('%d %d', left, ts), 'PX', ms(capacity - left))
    return {1, floor(left / interval), capacity - left, 0}
  end
  local retry = need - level
  if cost > burst then retry = -1 end
  return {0, floor(level / interval), capacity - level, retry}
end

local function load(key, capacity)
  local v = redis.call('GET', key)
  if not v then return capacity, now end
  local level, ts = string.match(v, '^(-?%d+) (%d+)$')
  level, ts = tonumber(level), tonumber(ts)
  if ts < now then  -- refill; a clock that stepped back refills nothing
    level = level + now - ts
    if level > capacity then level = capacity end
    ts = now
  end
  return level, ts
end

local function check(key, interval, burst)
  local capacity = burst * interval
  local level, ts = load(key, capacity)
  local need = cost * interval
  local left = level - need
  if need <= level then
    return true, floor(level / interval), capacity - level, 0,
           floor(left / interval), capacity - left, capacity - left, left, ts
  end
  local retry = need - level
  if cost > burst then retry = -1 end
  return false, floor(level / interval), capacity - level, retry,
         floor(left / interval), capacity - left, capacity - left, left, ts
end

local function commit(key, ttl, left, ts)
  redis.call('SET', key, string.format('%d %d', left, ts), 'PX', ms(ttl))
end

local function refund(key, interval, burst)
  local capacity = burst * interval
  local level, ts = load(key, capacity)
  level = math.min(capacity, level + cost * interval)
  if level == capacity then
    redis.call('DEL', key)  -- a full bucket is the same as no bucket
  else
    redis.call('SET', key, string.format('%d %d', level, ts), 'PX', ms(capacity - level))
  end
  return floor(level / interval), capacity - level
end
