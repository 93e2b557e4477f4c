-- gatekeep: sessions, save. Applies one request's changes to a session, in one call.
-- Returns  {1, created, last_seen, expires_at, absolute_expires_at} saved (µs),
--          {0} gone (destroyed, regenerated, expired or never there): nothing written,
--          {-1} the key (or KEYS[2]) already exists: draw another id
--
-- KEYS[1]  the session key
-- KEYS[2]  (optional) the new key when regenerating: the data moves there and KEYS[1]
--          is gone in this same call; it shares KEYS[1]'s hash tag (one cluster slot)
-- ARGV[1]  now (see session_prelude.lua)
-- ARGV[2]  idle timeout, µs
-- ARGV[3]  absolute lifetime, µs
-- ARGV[4]  mode: 'new' (create; the key must not exist), 'update' (the loaded session),
--          'adopt' (create under a signed id the store did not find, or update it if a
--          parallel request just did)
-- ARGV[5]  created, µs: 'update' the value seen at load; 'adopt' when the id was signed;
--          'new' ignored
-- ARGV[6]  '1' to remove every data key first (session.clear()), else '0'
-- ARGV[7]  user: '' unchanged, '-' remove, '+<id>' set
-- ARGV[8]  tombstone lifetime for KEYS[1] after a regenerate, µs (0: none)
-- ARGV[9]  n, how many keys to set; then n pairs (key, json); then the keys to remove
--
-- Only the top-level keys this request changed are written (HSET) or removed (HDEL),
-- each command once whatever the number of keys (every redis.call costs the server
-- more than the command itself), so two requests that change different keys of one session both persist. A save
-- never brings back a session that is gone: 'update' needs the live session that
-- was loaded (same created time), so a logout or a regenerate that happened while
-- this request was in flight wins.
local key = KEYS[1]
local idle, lifetime = tonumber(ARGV[2]), tonumber(ARGV[3])
local mode, created = ARGV[4], tonumber(ARGV[5])

local state, c, a, x, _, ti = meta(key, idle)
if mode == 'new' then
  if state ~= 'none' then return {-1} end
  c, a, x = now, now, now + lifetime
elseif state == 'dead' then
  return {0}
elseif state == 'none' then
  if mode ~= 'adopt' or created + lifetime <= now then return {0} end
  c, a, x = created, now, created + lifetime
elseif c ~= created then
  return {0}
end
if KEYS[2] and meta(KEYS[2], idle) ~= 'none' then return {-1} end

-- The writes: one HSET (the metadata, the touch, the changed keys, the user) and one
-- HDEL (the removed keys, the user), whatever their number; then the TTL (if touched;
-- a RENAME keeps it).
if ARGV[6] == '1' and state == 'live' then
  local data = {}
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if is_data(f) then data[#data + 1] = f end
  end
  each('HDEL', key, data)
end
-- The touch is lazy, as a read's: a live session last seen less than a tenth of the
-- idle timeout ago, with its TTL set for this idle timeout (its field i), keeps its
-- last-seen time and its TTL, min(a + idle, x): never earlier than a tenth of the idle
-- timeout before now + idle. Such a save spares the PEXPIRE (and 'a' and 'i'). A
-- regenerate (KEYS[2]: a log-in, rare) always touches: the new key starts afresh.
local touch = state ~= 'live' or KEYS[2] ~= nil or 10 * (now - a) >= idle
  or tonumber(ti) ~= idle
local seen = a
local set = {}
if touch then
  seen = math.max(a, now)
  set = {'a', fmt(seen), 'i', fmt(idle)}
end
if state ~= 'live' then  -- (touched) a live session has these already (c is `created`)
  set[5], set[6], set[7], set[8] = 'c', fmt(c), 'x', fmt(x)
end
local n = tonumber(ARGV[9])
for i = 10, 9 + 2 * n, 2 do
  set[#set + 1] = 'd:' .. ARGV[i]
  set[#set + 1] = ARGV[i + 1]
end
local user = ARGV[7]
if user ~= '' and user ~= '-' then
  set[#set + 1] = 'u'
  set[#set + 1] = string.sub(user, 2)
end
each('HSET', key, set)
local gone = {}
for i = 10 + 2 * n, #ARGV do gone[#gone + 1] = 'd:' .. ARGV[i] end
if user == '-' then gone[#gone + 1] = 'u' end
each('HDEL', key, gone)
if touch then redis.call('PEXPIRE', key, ms(math.min(seen + idle, x) - now)) end
a = seen

if KEYS[2] then
  redis.call('RENAME', key, KEYS[2])
  bury(key, now + tonumber(ARGV[8]))
end
return {1, c, a, math.min(a + idle, x), x}
