-- gatekeep: the head of the driver of plans with penalty blocks, between the prelude and
-- the algorithm (_driver_blocks.lua follows the algorithm; its header says the KEYS and
-- ARGV). It reads the first group's block key (the only one of a limiter's call) and
-- answers a call that this block covers whole before the algorithm's functions are
-- even defined: the cheapest denial, the one a flood from a blocked key gets.
local tail = tonumber(ARGV[#ARGV])
local n = (#ARGV - 4 - tail) / 2
local m = #KEYS - n
local at1 = 4 + 2 * n  -- the first group's arguments
local until1, breaches1 = 0, 0
if m > 0 then
  local v = redis.call('GET', KEYS[n + 1])
  if v then
    local u, b = string.match(v, '^(%d+) (%d+)$')
    until1, breaches1 = tonumber(u), tonumber(b)
    if until1 + tonumber(ARGV[at1 + 2]) <= now then breaches1 = 0 end  -- the count is over
  end
  if until1 > now and m == 1 and mode ~= 'refund' and mode ~= 'charge' and ARGV[at1] == '1'
      and tonumber(ARGV[at1 + 1]) == n then
    local left = until1 - now
    if n == 1 then return {0, 0, left, left} end
    local out = {}
    for i = 1, n do
      out[4 * i - 3], out[4 * i - 2], out[4 * i - 1], out[4 * i] = 0, 0, left, left
    end
    return out
  end
end
