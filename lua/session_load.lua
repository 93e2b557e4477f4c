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
--
-- 'touch' and 'peek' read the whole hash with one HGETALL and take the metadata from
-- it; 'meta' reads the metadata alone (HMGET), however large the data.
local key = KEYS[1]
local idle = tonumber(ARGV[2])
local mode = ARGV[3]
if mode == 'meta' then
  local state, c, a, x, u = meta(key, idle, true)
  if state == 'none' then return {0} end
  if state == 'dead' then return {-1} end
  return {1, c, a, math.min(a + idle, x), x, u or ''}
end

local flat = redis.call('HGETALL', key)
local out = {1, 0, 0, 0, 0, ''}  -- out[2..6] are filled below, data pairs follow
local n = 6
local t, c, a, x, u
for i = 1, #flat, 2 do
  local f = flat[i]
  if is_data(f) then
    out[n + 1] = string.sub(f, 3)
    out[n + 2] = flat[i + 1]
    n = n + 2
  elseif f == 'c' then c = flat[i + 1]
  elseif f == 'a' then a = flat[i + 1]
  elseif f == 'x' then x = flat[i + 1]
  elseif f == 'u' then u = flat[i + 1]
  elseif f == 't' then t = flat[i + 1]
  end
end
local state
state, c, a, x = judge(key, idle, mode ~= 'touch', t, c, a, x)
if state == 'none' then return {0} end
if state == 'dead' then return {-1} end

if mode == 'touch' then a = touch(key, a, x, idle) end
out[2], out[3], out[4], out[5], out[6] = c, a, math.min(a + idle, x), x, u or ''
return out
