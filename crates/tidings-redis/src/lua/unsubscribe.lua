-- ARGV: prefix, id, topic. Returns 1 if the channel followed the topic.
local id, topic = ARGV[2], ARGV[3]
if redis.call('HDEL', P .. 'c:' .. id, 't:' .. topic) == 1 then
  redis.call('SREM', P .. 's:' .. topic, id)
  return 1
end
return 0
