-- gatekeep: the driver of plans with penalty blocks, appended instead of
-- _driver.lua when a limiter has block= (plans without blocks never run this).
-- Same calls of the algorithm, same all-or-nothing hit; in addition, limits are
-- grouped (one group per caller key: the limiter's call, or a middleware rule)
-- and each group has a block key. While a group's block lasts its limits deny
-- without being checked; a hit that one of a group's limits denies starts that
-- group's next block.
--
-- KEYS[1..n]      the limits' keys, as in _driver.lua
-- KEYS[n+g]       group g's block key: "<until, µs since the epoch> <breaches>",
--                 living until `window` µs after the block's end
-- ARGV[4..3+2n]   the limits' parameters, as in _driver.lua
-- then per group: first, last (its limits, 1-based, inclusive), window (µs a
--                 breach count outlives its block), k, then k block lengths (µs):
--                 the b-th breach within the window blocks for the min(b, k)-th
-- ARGV[#ARGV]     how many ARGV the groups take
-- Returns         as _driver.lua; a blocked limit: 0, 0, block left, block left
-- (µs); a limit whose denial starts a block: its retry_after is at least the block.
-- (_blocks_head.lua, before the algorithm, has read the first group's block key.)
if mode == 'refund' then  -- a refund gives cost back and leaves blocks as they are
  local out = {}
  for i = 1, n do
    local remaining, reset = refund(KEYS[i], tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i]))
    out[#out + 1] = 1
    out[#out + 1] = remaining
    out[#out + 1] = reset
    out[#out + 1] = 0
  end
  return out
end

if mode == 'charge' then  -- a settlement's charge: the usage happened, so it commits
  local out = {}          -- whatever the limits or a block say, and starts no block
  for i = 1, n do
    local c = {check(KEYS[i], tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i]))}
    commit(KEYS[i], unpack(c, 7))
    out[#out + 1] = 1
    out[#out + 1] = c[5]
    out[#out + 1] = c[6]
    out[#out + 1] = 0
  end
  return out
end

if n == 1 and m == 1 then  -- the common call (one limit, its block), without tables
  local allowed, remaining, reset, retry, remaining_if_hit, reset_if_hit, ttl, s1, s2, s3, s4 =
    check(KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[5]))
  if allowed then  -- (not blocked: the head answered that)
    if mode == 'hit' then
      commit(KEYS[1], ttl, s1, s2, s3, s4)
      return {1, remaining_if_hit, reset_if_hit, 0}
    end
    return {1, remaining, reset, 0}
  end
  if mode == 'hit' then  -- a breach
    local b = breaches1 + 1
    local length = tonumber(ARGV[at1 + 3 + math.min(b, tonumber(ARGV[at1 + 3]))])
    redis.call('SET', KEYS[2], string.format('%d %d', now + length, b),
               'PX', ms(length + tonumber(ARGV[at1 + 2])))
    if retry >= 0 and retry < length then retry = length end
  end
  return {0, remaining, reset, retry}
end

local group, first, last, window, lengths, count = {}, {}, {}, {}, {}, {}
local ends, breaches = {}, {}
local blocked = false
local at = at1
for g = 1, m do
  first[g], last[g] = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  window[g], count[g], lengths[g] = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), at + 4
  at = at + 4 + count[g]
  for i = first[g], last[g] do group[i] = g end
  local until_, b = until1, breaches1  -- the head read the first group's block
  if g > 1 then
    until_, b = 0, 0
    local v = redis.call('GET', KEYS[n + g])
    if v then
      local u, c = string.match(v, '^(%d+) (%d+)$')
      until_, b = tonumber(u), tonumber(c)
      if until_ + window[g] <= now then b = 0 end  -- the count is over, on this clock too
    end
  end
  ends[g], breaches[g] = until_, b
  if until_ > now then blocked = true end
end

-- c[1] .. c[6]: allowed, remaining, reset, retry, remaining_if_hit, reset_if_hit;
-- c[7] ..: what commit takes. false: the limit's group is blocked.
local checks = {}
local all_allowed = not blocked
for i = 1, n do
  local g = group[i]
  if g and ends[g] > now then
    checks[i] = false
  else
    local c = {check(KEYS[i], tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i]))}
    checks[i] = c
    if not c[1] then all_allowed = false end
  end
end

local out = {}
if all_allowed and mode == 'hit' then
  for i = 1, n do
    local c = checks[i]
    commit(KEYS[i], unpack(c, 7))
    out[#out + 1] = 1
    out[#out + 1] = c[5]
    out[#out + 1] = c[6]
    out[#out + 1] = 0
  end
  return out
end

-- A denied hit of keys not blocked: each group with a denying limit is breached.
local started = {}
if mode == 'hit' and not blocked then
  for g = 1, m do
    for i = first[g], last[g] do
      if not checks[i][1] then
        local b = breaches[g] + 1
        local length = tonumber(ARGV[lengths[g] + math.min(b, count[g]) - 1])
        redis.call('SET', KEYS[n + g], string.format('%d %d', now + length, b),
                   'PX', ms(length + window[g]))
        started[g] = length
        break
      end
    end
  end
end

for i = 1, n do
  local c = checks[i]
  if c then
    local retry = c[4]
    local length = started[group[i] or 0]
    if length and not c[1] and retry >= 0 and retry < length then retry = length end
    out[#out + 1] = c[1] and 1 or 0
    out[#out + 1] = c[2]
    out[#out + 1] = c[3]
    out[#out + 1] = retry
  else
    local left = ends[group[i]] - now
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = left
    out[#out + 1] = left
  end
end
return out
