-- Session keys. ARGV: base, id, topic. Returns 1 if the channel followed the topic.
local id, topic = ARGV[2], ARGV[3]
local ck = P .. 'c:' .. id
redis.call('HDEL', ck, 'l:' .. topic)
if redis.call('HDEL', ck, 't:' .. topic) == 1 then
  redis.call('SREM', P .. 's:' .. topic, id)
  return 1
end
return 0
