-- Topic keys. ARGV: base, the user topic a new channel may start on the backlog of ('' for
-- none), then pairs of topic and the epoch to give it if new. Makes sure each topic exists and
-- counts it as used now, so that an idle sweep running meanwhile keeps it. Returns the head
-- "<epoch>:<offset>" of each, then, with a user topic, where its backlog starts: its mark, less
-- what is older than the topic's age bound.
local backlog = ARGV[2]
local now = now_ms()
local cursors, start = {}, ''
for i = 3, #ARGV, 2 do
  local topic = ARGV[i]
  local epoch, last = topic_meta(topic, ARGV[i + 1])
  local age = tonumber(redis.call('HGET', P .. 'm:' .. topic, 'age') or '0')
  redis.call('ZADD', P .. 'topics', 'GT', now + age, topic)
  cursors[#cursors + 1] = epoch .. ':' .. int(last)
  if topic == backlog then
    drop_aged(topic, last, now)
    start = epoch .. ':' .. (redis.call('HGET', P .. 'm:' .. topic, 'mark') or '0')
  end
end
if backlog ~= '' then
  cursors[#cursors + 1] = start
end
return cursors
