-- Topic keys. ARGV: base, cutoff, then pairs of topic and 1 if it is followed, else 0. The last
-- step of dropping idle topics: a followed topic counts as used now; one nobody follows is
-- dropped if it is still idle (follow.lua and appends move its score past the cutoff, so a
-- topic followed or appended to since the first step stays). Returns the topics dropped.
local cutoff = tonumber(ARGV[2])
local now = now_ms()
local dropped = {}
for i = 3, #ARGV, 2 do
  local topic = ARGV[i]
  if ARGV[i + 1] == '1' then
    local age = tonumber(redis.call('HGET', P .. 'm:' .. topic, 'age') or '0')
    redis.call('ZADD', P .. 'topics', 'GT', now + age, topic)
  else
    local score = redis.call('ZSCORE', P .. 'topics', topic)
    if score and tonumber(score) <= cutoff then
      drop_topic(topic)
      dropped[#dropped + 1] = topic
    end
  end
end
return dropped
