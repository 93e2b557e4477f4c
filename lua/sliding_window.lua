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

local function load(key, period)
  local start = math.floor(now / period) * period
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
  return {allowed, math.max(math.floor(limit - estimate), 0), reset_in(start, period, cur, prev),
          retry, math.max(math.floor(limit - estimate - cost), 0),
          reset_in(start, period, cur + cost, prev), {start, cur + cost, prev},
          reset_in(start, period, cur + cost, prev)}
end

local function commit(key, c)
  redis.call('SET', key, string.format('%d %d %d', c[STATE][1], c[STATE][2], c[STATE][3]), 'PX', ms(c[TTL]))
end

local function refund(key, limit, period)
  local start, cur, prev = load(key, period)
  cur = math.max(cur - cost, 0)
  if cur == 0 and prev == 0 then
    redis.call('DEL', key)
  else
    redis.call('SET', key, string.format('%d %d %d', start, cur, prev), 'PX',
               ms(reset_in(start, period, cur, prev)))
  end
  local estimate = prev * (period - (now - start)) / period + cur
  return math.max(math.floor(limit - estimate), 0), reset_in(start, period, cur, prev)
end
