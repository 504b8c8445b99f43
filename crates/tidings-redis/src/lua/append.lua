-- ARGV: prefix, topic, record, size, max messages, max bytes, epoch for a new topic.
-- Returns {epoch, offset, first}.
local topic, record, size = ARGV[2], ARGV[3], tonumber(ARGV[4])
local max_messages, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local epoch = topic_meta(topic, ARGV[7])
local mk, sk = P .. 'm:' .. topic, P .. 't:' .. topic
local offset = redis.call('HINCRBY', mk, 'last', 1)
redis.call('XADD', sk, int(offset) .. '-0', 'r', record, 'n', size)
local bytes = redis.call('HINCRBY', mk, 'bytes', size)
local first = tonumber(redis.call('HGET', mk, 'first'))
-- Oldest first, until both bounds hold; the newest record always stays.
while first < offset and (offset - first + 1 > max_messages or bytes > max_bytes) do
  local id = int(first) .. '-0'
  local entry = redis.call('XRANGE', sk, id, id)
  if entry[1] then
    bytes = bytes - tonumber(entry[1][2][4])
    redis.call('XDEL', sk, id)
  end
  first = first + 1
end
redis.call('HSET', mk, 'first', first, 'bytes', bytes)
redis.call('ZADD', P .. 'topics', now_ms(), topic)
redis.call('PUBLISH', P .. 'heads',
  cjson.encode({ t = topic, e = epoch, o = int(offset), f = int(first), r = record }))
return { epoch, offset, first }
