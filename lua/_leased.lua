-- gatekeep: rate limits and leases in one call, all-or-nothing (appended to
-- _prelude.lua, _lease.lua and an algorithm + _driver.lua wrapped as limits()).
--
-- KEYS[1..n]         the rate limits' keys (as the driver takes them)
-- KEYS[n+1..n+m]     the lease sets, one per concurrency limit
-- ARGV[1..3+2n]      as the driver takes them (mode: 'hit' or 'peek')
-- ARGV[4+2n+2(j-1)]  limit of lease j (how many may be held); the next ARGV: its ttl µs
-- ARGV[#ARGV-1]      m; ARGV[#ARGV]: the lease id to take on every lease set
-- Returns            the driver's reply (four integers per rate), then four per lease
--                    as concurrency.lua's 'acquire' gives them.
-- The leases are taken only when every rate allows and every lease set has room;
-- the rates are charged only then too (the driver peeks when a lease set is full).

local m = tonumber(ARGV[#ARGV - 1])
local id = ARGV[#ARGV]
local n = #KEYS - m
local sets, limits_, free, held = {}, {}, true, {}
for j = 1, m do
  sets[j] = KEYS[n + j]
  limits_[j] = tonumber(ARGV[2 + 2 * (n + j)])
  held[j] = lease_live(sets[j])
  if held[j] >= limits_[j] then free = false end
end
for j = n + m, n + 1, -1 do KEYS[j] = nil end
if not free and mode == 'hit' then mode = 'peek' end
local out = limits()
local take = mode == 'hit'
for i = 1, n do
  if out[4 * i - 3] ~= 1 then take = false end
end
for j = 1, m do
  local key, limit, last = sets[j], limits_[j], nil
  if take then
    last = lease_put(key, id, tonumber(ARGV[3 + 2 * (n + j)]))
    held[j] = held[j] + 1
  end
  local a, r, reset, retry = lease_reply(key, held[j] < limit or take, held[j], limit, last)
  out[#out + 1] = a
  out[#out + 1] = r
  out[#out + 1] = reset
  out[#out + 1] = retry
end
return out
