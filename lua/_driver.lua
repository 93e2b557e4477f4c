-- gatekeep: shared driver, appended to every limiter script when it is loaded.
-- It calls the algorithm's check / commit / refund for each limit and makes the
-- call all-or-nothing: state is written only when every limit allows the hit.
--
-- Returns a flat array, four integers per limit, in KEYS order:
--   allowed (1/0), remaining, reset_after (µs), retry_after (µs, -1 = never)
local n = #KEYS
if n == 1 and mode ~= 'refund' then  -- the common case, without the loops (same result)
  local c = check(KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[5]))
  if c[ALLOWED] and mode == 'hit' then
    commit(KEYS[1], c)
    return {1, c[REMAINING_IF_HIT], c[RESET_IF_HIT], 0}
  end
  return {c[ALLOWED] and 1 or 0, c[REMAINING], c[RESET], c[RETRY]}
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

local checks = {}
local all_allowed = true
for i = 1, n do
  local c = check(KEYS[i], tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i]))
  checks[i] = c
  if not c[ALLOWED] then all_allowed = false end
end

local consume = all_allowed and mode == 'hit'
for i = 1, n do
  local c = checks[i]
  if consume then
    commit(KEYS[i], c)
    out[#out + 1] = 1
    out[#out + 1] = c[REMAINING_IF_HIT]
    out[#out + 1] = c[RESET_IF_HIT]
    out[#out + 1] = 0
  else
    out[#out + 1] = c[ALLOWED] and 1 or 0
    out[#out + 1] = c[REMAINING]
    out[#out + 1] = c[RESET]
    out[#out + 1] = c[RETRY]
  end
end
return out
