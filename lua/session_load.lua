-- gatekeep: sessions, load. Reads a session and extends its idle deadline, in one call.
--
-- KEYS[1]  the session key
-- ARGV[1]  now (see session_prelude.lua)
-- ARGV[2]  idle timeout, µs
-- ARGV[3]  'touch' (load: extend the idle deadline), 'peek' (read only) or 'meta' (read
--          only, no data). 'peek' and 'meta' never write: they run as EVALSHA_RO, on a
--          replica too (an expired session is reported, not deleted)
-- Returns  {0} no such session (never existed, expired, or its tombstone lapsed)
--          {-1} destroyed or regenerated (a tombstone)
--          {1, created, last_seen, expires_at, absolute_expires_at, user or '',
--           key1, json1, key2, json2, ...}          (times in µs; data keys in any order)
local key = KEYS[1]
local idle = tonumber(ARGV[2])
local state, c, a, x, u = meta(key, idle, ARGV[3] ~= 'touch')
if state == 'none' then return {0} end
if state == 'dead' then return {-1} end

if ARGV[3] == 'touch' then a = touch(key, a, x, idle) end
local out = {1, c, a, math.min(a + idle, x), x, u or ''}
if ARGV[3] ~= 'meta' then
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 'd:' then
      out[#out + 1] = string.sub(flat[i], 3)
      out[#out + 1] = flat[i + 1]
    end
  end
end
return out
