-- Session keys. ARGV: base, id, ttl in ms. Returns 1 if the channel exists.
local id = ARGV[2]
if redis.call('EXISTS', P .. 'c:' .. id) == 0 then
  return 0
end
expire_at(id, now_ms() + tonumber(ARGV[3]))
return 1
