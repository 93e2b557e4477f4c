-- gatekeep: sessions, peek. Reads a session without moving anything: EVALSHA_RO, on a
-- replica too. Prepended with session_clock.lua only (no helpers). The executor sends
-- the same read as plain commands (TIME, HGETALL pipelined: no script to pay for) but
-- on a cluster, where TIME, having no key, would go to another node: this script runs
-- there (gatekeep.sessions._redis).
--
-- KEYS[1]  the session key
-- ARGV[1]  now (see session_clock.lua)
-- Returns  the hash as HGETALL gives it (field1, value1, ...), then now (µs). The
--          caller judges the fields against that now (gatekeep.sessions._loaded, the
--          rule of judge() in session_prelude.lua): live, destroyed, or no session (an
--          expired session is reported, never deleted here).
local flat = redis.call('HGETALL', KEYS[1])
flat[#flat + 1] = now
return flat
