-- gatekeep: sliding window counter. O(1) memory: the counts of the current and
-- the previous fixed window; the previous one is weighted by how much of it the
-- sliding window still covers ("estimate").
--
-- KEYS[i]      one string per limit: "<window start µs> <current count> <previous count>"
-- ARGV[2+2i]   limit: requests per sliding window
-- ARGV[3+2i]   period: the window length in microseconds
-- Returns      see _driver.lua: allowed, remaining, reset_after µs, retry_after µs
--
-- Error bound: the estimate assumes the previous window's requests were spread
-- evenly. It never exceeds the limit, but a true sliding window of one period
-- can hold up to 2 x limit when the previous window's requests all came at its
-- very end (the same worst case as a fixed window, and rare in real traffic).

-- The common call (one limit, a hit) inlined: check and commit below, the same
-- arithmetic, without the calls and closures that cost server time on every call
-- (their definitions below are not reached then). The twin tests cover both paths.
if mode == 'hit' and #KEYS == 1 then
  local key, limit = KEYS[1], tonumber(ARGV[4])
  local period = tonumber(ARGV[5])
  local start = floor(now / period) * period
  local cur, prev = 0, 0
  local v = redis.call('GET', key)
  if v then
    local s, c, p = string.match(v, '^(%d+) (%d+) (%d+)$')
    s = tonumber(s)
    if s == start then
      cur, prev = tonumber(c), tonumber(p)
    elseif s == start - period then
      prev = tonumber(c)
    end
  end
  local elapsed = now - start
  local estimate = prev * (period - elapsed) / period + cur
  if estimate + cost <= limit then
    local remaining, reset = floor(limit - estimate - cost), 0
    if remaining < 0 then remaining = 0 end
    if cur + cost > 0 then
      reset = start + 2 * period - now
    elseif prev > 0 then
      reset = start + period - now
    end
    v = string.format('%d %d %d', start, cur + cost, prev)
    if keepttl and cur > 0 then
      redis.call('SET', key, v, 'KEEPTTL')
    else
      redis.call('SET', key, v, 'PX', ms(reset))
    end
    return {1, remaining, reset, 0}
  end
  local remaining, reset, retry = floor(limit - estimate), 0, -1
  if remaining < 0 then remaining = 0 end
  if cur > 0 then
    reset = start + 2 * period - now
  elseif prev > 0 then
    reset = start + period - now
  end
  if cost <= limit then
    if cur + cost <= limit then
      retry = math.ceil(period - (limit - cur - cost) * period / prev - elapsed)
    else
      retry = math.ceil(period - elapsed + period - (limit - cost) * period / cur)
    end
  end
  return {0, remaining, reset, retry}
end

local function load(key, period)
  local start = floor(now / period) * period
  local v = redis.call('GET', key)
  if v then
    local s, cur, prev = string.match(v, '^(%d+) (%d+) (%d+)$')
    s = tonumber(s)
    if s == start then return start, tonumber(cur), tonumber(prev) end
    if s == start - period then return start, 0, tonumber(cur) end
  end
  return start, 0, 0
end

-- Microseconds until "estimate + cost <= limit" holds, counted from now.
local function wait(limit, period, elapsed, cur, prev)
  if cur + cost <= limit then
    -- within this window, as the previous window's weight decays
    return math.ceil(period - (limit - cur - cost) * period / prev - elapsed)
  end
  -- in the next window, where this window's count becomes the previous one
  return math.ceil(period - elapsed + period - (limit - cost) * period / cur)
end

local function reset_in(start, period, cur, prev)
  if cur > 0 then return start + 2 * period - now end
  if prev > 0 then return start + period - now end
  return 0
end

local function check(key, limit, period)
  local start, cur, prev = load(key, period)
  local elapsed = now - start
  local estimate = prev * (period - elapsed) / period + cur
  local allowed = estimate + cost <= limit
  local retry = 0
  if not allowed then
    if cost > limit then retry = -1 else retry = wait(limit, period, elapsed, cur, prev) end
  end
  local remaining, remaining_if_hit = floor(limit - estimate), floor(limit - estimate - cost)
  if remaining < 0 then remaining = 0 end
  if remaining_if_hit < 0 then remaining_if_hit = 0 end
  local reset_if_hit = reset_in(start, period, cur + cost, prev)
  return allowed, remaining, reset_in(start, period, cur, prev), retry,
         remaining_if_hit, reset_if_hit, reset_if_hit, start, cur + cost, prev
end

-- A key that held a count of this window lives until the next window's end already.
local function commit(key, ttl, start, cur, prev)
  local v = string.format('%d %d %d', start, cur, prev)
  if keepttl and cur > cost then
    redis.call('SET', key, v, 'KEEPTTL')
  else
    redis.call('SET', key, v, 'PX', ms(ttl))
  end
end

local function refund(key, limit, period)
  local start, cur, prev = load(key, period)
  cur = cur - cost
  if cur < 0 then cur = 0 end
  if cur == 0 and prev == 0 then
    redis.call('DEL', key)
  else
    redis.call('SET', key, string.format('%d %d %d', start, cur, prev), 'PX',
               ms(reset_in(start, period, cur, prev)))
  end
  local remaining = floor(limit - (prev * (period - (now - start)) / period + cur))
  if remaining < 0 then remaining = 0 end
  return remaining, reset_in(start, period, cur, prev)
end
