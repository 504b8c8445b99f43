-- ARGV: prefix, idle in ms, max. Drops up to max topics nobody follows that saw no append for
-- idle (plus their age bound: the score of a topic is when it was last appended to, or found
-- followed, plus that bound); a followed topic found on the way counts as used now. Returns the
-- topics dropped.
local idle, max = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local dropped = {}
local candidates = redis.call('ZRANGEBYSCORE', P .. 'topics', '-inf', now - idle, 'LIMIT', 0, max)
for _, topic in ipairs(candidates) do
  if #live_members(P .. 's:' .. topic) == 0 then
    drop_topic(topic)
    dropped[#dropped + 1] = topic
  else
    local age = tonumber(redis.call('HGET', P .. 'm:' .. topic, 'age') or '0')
    redis.call('ZADD', P .. 'topics', now + age, topic)
  end
end
return dropped
