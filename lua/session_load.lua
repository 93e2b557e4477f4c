-- gatekeep: sessions, load. Reads a session and extends its idle deadline, in one call.
--
-- KEYS[1]  the session key
-- ARGV[1]  now (see session_clock.lua)
-- ARGV[2]  idle timeout, µs
-- ARGV[3]  'touch' (load: extend the idle deadline) or 'meta' (read only, no data:
--          never writes, runs as EVALSHA_RO, on a replica too; an expired session is
--          reported, not deleted). The read without the touch is session_peek.lua.
-- Returns  'touch': the hash as HGETALL gives it (field1, value1, ...; a touched
--          session's new last-seen time as the value of a), then now (µs); only now
--          when there was no session (or an expired one, deleted). The caller judges
--          the fields against that now as judge() does (gatekeep.sessions._loaded:
--          live, destroyed, or no session), as it does session_peek.lua's reply.
--          'meta': {0} no such session (never existed, expired, or its tombstone lapsed),
--          {-1} destroyed or regenerated (a tombstone), or
--          {1, created, last_seen, expires_at, absolute_expires_at, user or ''} (µs)
--
-- 'touch' reads the whole hash with one HGETALL and hands it over as it is:
-- the server's work stays the read (and the touch), the reply's layout is the client's
-- to make. 'meta' reads the metadata alone (HMGET), however large the data.
local key = KEYS[1]
local idle = tonumber(ARGV[2])
local mode = ARGV[3]
if mode == 'meta' then
  local state, c, a, x, u = meta(key, idle, true)
  if state == 'none' then return {0} end
  if state == 'dead' then return {-1} end
  return {1, c, a, math.min(a + idle, x), x, u or ''}
end
if mode ~= 'touch' then return redis.error_reply('gatekeep: session_load mode ' .. mode) end

local flat = redis.call('HGETALL', key)
local t, c, a, x, at
for i = 1, #flat, 2 do
  local f = flat[i]
  if #f == 1 then  -- metadata: one letter (data fields are 'd:' .. key)
    if f == 'a' then a, at = flat[i + 1], i + 1
    elseif f == 'c' then c = flat[i + 1]
    elseif f == 'x' then x = flat[i + 1]
    elseif f == 't' then t = flat[i + 1]
    end
  end
end
local state
state, c, a, x = judge(key, idle, false, t, c, a, x)
if state == 'none' then return {now} end
if state == 'live' then flat[at] = fmt(touch(key, a, x, idle)) end
flat[#flat + 1] = now
return flat
