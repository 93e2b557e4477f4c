-- gatekeep: GCRA, the generic cell rate algorithm. One key: the theoretical
-- arrival time (TAT) of the next request.
--
-- KEYS[i]      one string per limit: "<tat>", integer microseconds
-- ARGV[2+2i]   interval: microseconds per request (ceil(period / limit))
-- ARGV[3+2i]   burst: how many requests may arrive at once
-- Returns      see _driver.lua: allowed, remaining, reset_after µs, retry_after µs
--
-- "backlog" is how far the TAT runs ahead of now; a request of cost c adds
-- c x interval to it and is allowed while the backlog stays within the
-- tolerance burst x interval.

local function load(key)
  local tat = tonumber(redis.call('GET', key)) or now
  return math.max(tat - now, 0)
end

local function check(key, interval, burst)
  local tolerance = burst * interval
  local backlog = load(key)
  local new_backlog = backlog + cost * interval
  local allowed = new_backlog <= tolerance
  local retry = 0
  if not allowed then
    if cost > burst then retry = -1 else retry = new_backlog - tolerance end
  end
  return {allowed, math.floor((tolerance - backlog) / interval), backlog, retry,
          math.floor((tolerance - new_backlog) / interval), new_backlog,
          now + new_backlog, new_backlog}
end

local function commit(key, c)
  redis.call('SET', key, string.format('%d', c[STATE]), 'PX', ms(c[TTL]))
end

local function refund(key, interval, burst)
  local tolerance = burst * interval
  local backlog = math.max(load(key) - cost * interval, 0)
  if backlog == 0 then
    redis.call('DEL', key)
  else
    redis.call('SET', key, string.format('%d', now + backlog), 'PX', ms(backlog))
  end
  return math.floor((tolerance - backlog) / interval), backlog
end
