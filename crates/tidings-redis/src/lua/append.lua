-- ARGV: prefix, topic, record, size, max messages, max bytes, epoch for a new topic, age in ms
-- (0 for none). Returns {epoch, offset, first}.
local topic, record, size = ARGV[2], ARGV[3], tonumber(ARGV[4])
local max_messages, max_bytes, age = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[8]
local epoch = topic_meta(topic, ARGV[7])
local mk, sk = P .. 'm:' .. topic, P .. 't:' .. topic
local now = now_ms()
local offset = redis.call('HINCRBY', mk, 'last', 1)
redis.call('XADD', sk, int(offset) .. '-0', 'r', record, 'n', size, 'w', now)
redis.call('HINCRBY', mk, 'bytes', size)
redis.call('HSET', mk, 'age', age)
-- Oldest first, until every bound holds; the newest record always stays.
trim(topic, offset, 1, function(_, first, bytes)
  return offset - first + 1 > max_messages or bytes > max_bytes
end)
drop_aged(topic, offset, now)
local first = tonumber(redis.call('HGET', mk, 'first'))
-- A topic with an age bound is kept that much longer once idle.
redis.call('ZADD', P .. 'topics', now + tonumber(age), topic)
redis.call('PUBLISH', P .. 'heads',
  cjson.encode({ t = topic, e = epoch, o = int(offset), f = int(first), r = record }))
return { epoch, offset, first }
