-- Session keys. ARGV: base, id, holder.
local key = P .. 'r:' .. ARGV[2]
if redis.call('GET', key) == ARGV[3] then
  redis.call('DEL', key)
end
return 0
