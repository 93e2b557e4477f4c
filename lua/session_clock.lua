-- gatekeep: sessions, the clock: prepended to every session script when it is loaded.
--
-- ARGV[1]  now, integer microseconds since the epoch; '' to read the server's TIME
-- KEYS[1]  the session (or user index) key of the script that follows
-- Returns  nothing: it defines now
--
-- A session is one hash. Metadata fields:
--   c  created (µs)          a  last seen (µs)          x  absolute expiry (µs)
--   u  user id (optional)    t  tombstone: destroyed until t (µs); no other field then
--   i  the idle timeout (µs) the key's TTL was last set with (by a touch)
-- Data fields are 'd:' .. top-level key, each holding that value's JSON text.
-- Expiry is checked against `now` (so a caller's clock drives it), and PEXPIRE
-- bounds memory in real time; both agree when `now` is the server's clock.
local now = tonumber(ARGV[1])
if not now then
  if redis.replicate_commands then redis.replicate_commands() end  -- Redis < 7: TIME before writes
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
