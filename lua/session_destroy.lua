-- gatekeep: sessions, destroy (log out). The session is gone for good in this call.
--
-- KEYS[1]  the session key
-- ARGV[1]  now (see session_prelude.lua)
-- ARGV[2]  idle timeout, µs
-- ARGV[3]  tombstone lifetime, µs (0: none). A tombstone keeps a non-strict store from
--          adopting the id again while a cookie carrying it could still be valid.
-- Returns  {1, user or ''} a live session was destroyed; {0, ''} there was none
local key = KEYS[1]
local state, c, a, x, u = meta(key, tonumber(ARGV[2]))
if state == 'dead' then return {0, ''} end
bury(key, now + tonumber(ARGV[3]))
if state == 'none' then return {0, ''} end
return {1, u or ''}
