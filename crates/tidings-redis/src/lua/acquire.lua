-- Session keys. ARGV: base, id, holder, ttl in ms. Returns 1 if holder now holds the receiver lock.
local id, holder, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
local ck = P .. 'c:' .. id
if redis.call('EXISTS', ck) == 0 then
  return 0
end
local current = redis.call('GET', P .. 'r:' .. id)
if current and current ~= holder then
  return 0
end
redis.call('SET', P .. 'r:' .. id, holder, 'PX', ttl)
-- A held channel does not expire; its keys must not either.
if redis.call('PTTL', ck) < ttl + BACKSTOP_MS then
  redis.call('PEXPIRE', ck, ttl + BACKSTOP_MS)
end
return 1
