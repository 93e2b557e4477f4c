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

-- The common call (one limit, a hit) inlined: check and commit below, the same
-- arithmetic, without the calls and closures that cost server time on every call
-- (their definitions below are not reached then). The twin tests cover both paths.
if mode == 'hit' and #KEYS == 1 then
  local key, interval = KEYS[1], tonumber(ARGV[4])
  local burst = tonumber(ARGV[5])
  local tolerance = burst * interval
  local backlog = 0
  local tat = tonumber(redis.call('GET', key))
  if tat and tat > now then backlog = tat - now end
  local new_backlog = backlog + cost * interval
  if new_backlog <= tolerance then
    redis.call('SET', key, string.format('%d', now + new_backlog), 'PX', ms(new_backlog))
    return {1, floor((tolerance - new_backlog) / interval), new_backlog, 0}
  end
  local retry = new_backlog - tolerance
  if cost > burst then retry = -1 end
  return {0, floor((tolerance - backlog) / interval), backlog, retry}
end

local function load(key)
  local tat = tonumber(redis.call('GET', key))
  if not tat or tat < now then return 0 end
  return tat - now
end

local function check(key, interval, burst)
  local tolerance = burst * interval
  local backlog = load(key)
  local new_backlog = backlog + cost * interval
  local retry = 0
  if new_backlog > tolerance then
    if cost > burst then retry = -1 else retry = new_backlog - tolerance end
  end
  return retry == 0, floor((tolerance - backlog) / interval), backlog, retry,
         floor((tolerance - new_backlog) / interval), new_backlog,
         new_backlog, now + new_backlog
end

local function commit(key, ttl, tat)
  redis.call('SET', key, string.format('%d', tat), 'PX', ms(ttl))
end

local function refund(key, interval, burst)
  local tolerance = burst * interval
  local backlog = load(key) - cost * interval
  if backlog <= 0 then
    backlog = 0
    redis.call('DEL', key)
  else
    redis.call('SET', key, string.format('%d', now + backlog), 'PX', ms(backlog))
  end
  return floor((tolerance - backlog) / interval), backlog
end
