-- ARGV: prefix, id, then pairs of topic and "<epoch>:<offset>". Saves only followed topics; the
-- cursor of the channel's user's topic also moves that topic's mark forward, in its epoch.
local ck = P .. 'c:' .. ARGV[2]
local user = redis.call('HGET', ck, 'u')
local user_topic = user and ('$user:' .. user)
for i = 3, #ARGV, 2 do
  local topic, cursor = ARGV[i], ARGV[i + 1]
  local field = 't:' .. topic
  if redis.call('HEXISTS', ck, field) == 1 then
    redis.call('HSET', ck, field, cursor)
    if topic == user_topic then
      local mk = P .. 'm:' .. topic
      local epoch, offset = string.match(cursor, '^(%d+):(%d+)$')
      local meta = redis.call('HMGET', mk, 'epoch', 'last', 'mark')
      if meta[1] == epoch then
        local mark = math.min(tonumber(offset), tonumber(meta[2]))
        if mark > tonumber(meta[3] or '0') then
          redis.call('HSET', mk, 'mark', mark)
        end
      end
    end
  end
end
return 0
