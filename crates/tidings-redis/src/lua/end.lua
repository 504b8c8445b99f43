-- Session keys. ARGV: base, id, linger in ms. Returns 1 if this call ended the channel.
local id = ARGV[2]
local ck = P .. 'c:' .. id
if redis.call('EXISTS', ck) == 1 and redis.call('HSETNX', ck, 'e', '1') == 1 then
  expire_at(id, now_ms() + tonumber(ARGV[3]))
  return 1
end
return 0
