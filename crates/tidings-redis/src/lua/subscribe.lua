-- ARGV: prefix, id, topic, epoch for a new topic. Returns "<epoch>:<offset>", or nil for an
-- unknown channel.
local id, topic = ARGV[2], ARGV[3]
local ck = P .. 'c:' .. id
if redis.call('EXISTS', ck) == 0 then
  return nil
end
local field = 't:' .. topic
local cursor = redis.call('HGET', ck, field)
if cursor then
  return cursor
end
local epoch, last = topic_meta(topic, ARGV[4])
cursor = epoch .. ':' .. int(last)
redis.call('SADD', P .. 's:' .. topic, id)
redis.call('HSET', ck, field, cursor)
return cursor
