-- Topic keys. ARGV: base, topic, max messages, max bytes, epoch for a new topic, age in ms (0 for
-- none), then a record and its size for each record of the batch (at least one). Appends them at
-- consecutive offsets, applies retention once, and announces them together. Returns {epoch, offset
-- of the last, first}.
local topic = ARGV[2]
local max_messages, max_bytes, age = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[6]
local epoch = topic_meta(topic, ARGV[5])
local mk, sk = P .. 'm:' .. topic, P .. 't:' .. topic
local now = now_ms()
local records, size = {}, 0
local offset = tonumber(redis.call('HGET', mk, 'last'))
for i = 7, #ARGV, 2 do
  offset = offset + 1
  redis.call('XADD', sk, int(offset) .. '-0', 'r', ARGV[i], 'n', ARGV[i + 1], 'w', now)
  size = size + tonumber(ARGV[i + 1])
  records[#records + 1] = ARGV[i]
end
redis.call('HSET', mk, 'last', int(offset), 'age', age)
redis.call('HINCRBY', mk, 'bytes', size)
-- Oldest first, until every bound holds; the newest record always stays.
trim(topic, offset, 1, function(_, first, bytes)
  return offset - first + 1 > max_messages or bytes > max_bytes
end)
drop_aged(topic, offset, now)
local first = tonumber(redis.call('HGET', mk, 'first'))
-- A topic with an age bound is kept that much longer once idle.
redis.call('ZADD', P .. 'topics', now + tonumber(age), topic)
redis.call(PUBLISH, P .. 'heads',
  cjson.encode({ t = topic, e = epoch, o = int(offset), f = int(first), r = records }))
return { epoch, offset, first }
