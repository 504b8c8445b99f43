-- Session keys. ARGV: base, id, "<code> <reason>". Returns 1 if this call closed the channel.
local ck = P .. 'c:' .. ARGV[2]
if redis.call('EXISTS', ck) == 1 and redis.call('HSETNX', ck, 'k', ARGV[3]) == 1 then
  return 1
end
return 0
