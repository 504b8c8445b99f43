-- ARGV: prefix, idle in ms, max. Drops up to max topics nobody follows that saw no append for
-- idle; a followed topic found on the way counts as used now. Returns the topics dropped.
local max = tonumber(ARGV[3])
local now = now_ms()
local dropped = {}
local candidates = redis.call('ZRANGEBYSCORE', P .. 'topics', '-inf', now - tonumber(ARGV[2]),
  'LIMIT', 0, max)
for _, topic in ipairs(candidates) do
  if #live_members(P .. 's:' .. topic) == 0 then
    drop_topic(topic)
    dropped[#dropped + 1] = topic
  else
    redis.call('ZADD', P .. 'topics', now, topic)
  end
end
return dropped
