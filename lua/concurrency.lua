-- gatekeep: a concurrency limit. At most "limit" leases held on one key at once.
--
-- KEYS[1]   the lease set (see _lease.lua)
-- ARGV[1]   now, µs ('' for the server's TIME); ARGV[3] cost: unused (a lease is one slot)
-- ARGV[2]   mode: 'acquire' (take a lease when one is free), 'renew' (extend a held
--           lease; a lapsed one is lost, never taken again: that could revive a lease
--           released meanwhile), 'release', 'peek'
-- ARGV[4]   limit: how many leases may be held at once (>= 1)
-- ARGV[5]   ttl: the lease's lifetime in µs from now (acquire, renew)
-- ARGV[6]   the lease id (acquire, renew, release)
-- Returns   allowed (1/0: acquired, renewed, released; for 'peek': one would fit),
--           remaining slots, reset_after µs (until the last lease lapses),
--           retry_after µs (until the first one lapses; 0 when allowed)

local key, limit, ttl, id = KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local held = lease_live(key)
if mode == 'acquire' then
  if held < limit then
    return {lease_reply(key, true, held + 1, limit, lease_put(key, id, ttl))}
  end
  return {lease_reply(key, false, held, limit)}
elseif mode == 'renew' then
  if not redis.call('ZSCORE', key, id) then
    return {lease_reply(key, false, held, limit)}  -- lapsed or released: lost
  end
  return {lease_reply(key, true, held, limit, lease_put(key, id, ttl))}
elseif mode == 'release' then
  local last = nil
  if redis.call('ZREM', key, id) == 1 then
    held = held - 1
    last = lease_last(key)
    if last > 0 then redis.call('PEXPIRE', key, ms(last)) end
  end
  return {lease_reply(key, true, held, limit, last)}
end
return {lease_reply(key, held < limit, held, limit)}  -- peek
