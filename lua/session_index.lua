-- gatekeep: sessions, the per-user index: one sorted set per user.
-- KEYS[1]  the index key of one user
-- ARGV[1]  now (see session_prelude.lua); ARGV[2] op: 'add', 'remove', 'list' or 'pop'
-- Returns  per op, below
--
-- Members are session ids, scored by their absolute expiry (µs): an entry can never
-- outlive its session's longest possible life, and the key expires with the last one.
-- Session scripts and index scripts each touch one key (one cluster slot): the store
-- pipelines them, and listing checks each entry against its session.
--
-- add:     ARGV[3] max entries, ARGV[4] id, ARGV[5] its absolute expiry µs ('' for a new
--          session: now + ARGV[7]), ARGV[6] an id to remove first ('' none: regenerate),
--          ARGV[7] the absolute lifetime, µs
--          Returns the ids evicted to stay within max entries (oldest first)
-- remove:  ARGV[3..] ids.  Returns {how many were there}
-- list:    Returns {id1, expiry1, id2, expiry2, ...} by expiry
-- pop:     Returns {id1, id2, ...} and deletes the index
local key, op = KEYS[1], ARGV[2]
redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. fmt(now + 1))

local function expire()
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last == 0 then return end
  redis.call('PEXPIRE', key, ms(tonumber(last[2]) - now))
end

if op == 'add' then
  local max = tonumber(ARGV[3])
  if ARGV[6] ~= '' then redis.call('ZREM', key, ARGV[6]) end
  local expiry = tonumber(ARGV[5]) or now + tonumber(ARGV[7])
  redis.call('ZADD', key, fmt(expiry), ARGV[4])
  local over = redis.call('ZCARD', key) - max
  local evicted = {}
  if over > 0 then
    evicted = redis.call('ZRANGE', key, 0, over - 1)
    redis.call('ZREMRANGEBYRANK', key, 0, over - 1)
  end
  expire()
  return evicted
elseif op == 'remove' then
  local n = 0
  for i = 3, #ARGV do n = n + redis.call('ZREM', key, ARGV[i]) end
  expire()
  return {n}
elseif op == 'list' then
  local flat = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 2, #flat, 2 do flat[i] = fmt(tonumber(flat[i])) end
  return flat
end
local ids = redis.call('ZRANGE', key, 0, -1)
redis.call('DEL', key)
return ids
