-- gatekeep: shared driver, appended to every limiter script when it is loaded.
-- It calls the algorithm's check / commit / refund for each limit and makes the
-- call all-or-nothing: state is written only when every limit allows the hit.
--
-- Returns a flat array, four integers per limit, in KEYS order:
--   allowed (1/0), remaining, reset_after (µs), retry_after (µs, -1 = never)
-- Mode 'charge' commits whether or not the limits allow it (a reservation settled
-- above its estimate): the state may go beyond the limit, a debt later calls wait out.
local n = #KEYS
if n == 1 and mode ~= 'refund' then  -- the common case, without tables or loops (same result)
  local allowed, remaining, reset, retry, remaining_if_hit, reset_if_hit, ttl, s1, s2, s3, s4 =
    check(KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[5]))
  if mode == 'charge' or (allowed and mode == 'hit') then
    commit(KEYS[1], ttl, s1, s2, s3, s4)
    return {1, remaining_if_hit, reset_if_hit, 0}
  end
  return {allowed and 1 or 0, remaining, reset, retry}
end

local out = {}
if mode == 'refund' then
  for i = 1, n do
    local remaining, reset = refund(KEYS[i], tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i]))
    out[#out + 1] = 1
    out[#out + 1] = remaining
    out[#out + 1] = reset
    out[#out + 1] = 0
  end
  return out
end

-- c[1] .. c[6]: allowed, remaining, reset, retry, remaining_if_hit, reset_if_hit;
-- c[7] ..: what commit takes (the lifetime, then the state)
local checks = {}
local all_allowed = true
for i = 1, n do
  local c = {check(KEYS[i], tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i]))}
  checks[i] = c
  if not c[1] then all_allowed = false end
end

local consume = mode == 'charge' or (all_allowed and mode == 'hit')
for i = 1, n do
  local c = checks[i]
  if consume then
    commit(KEYS[i], unpack(c, 7))
    out[#out + 1] = 1
    out[#out + 1] = c[5]
    out[#out + 1] = c[6]
    out[#out + 1] = 0
  else
    out[#out + 1] = c[1] and 1 or 0
    out[#out + 1] = c[2]
    out[#out + 1] = c[3]
    out[#out + 1] = c[4]
  end
end
return out
