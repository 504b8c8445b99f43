-- Session keys. ARGV: base, id, then pairs of topic and "<epoch>:<offset>". Saves only followed
-- topics. Returns {user topic, cursor} when it saved the cursor of the channel's user's topic
-- (whose mark mark.lua then moves), else an empty list.
local ck = P .. 'c:' .. ARGV[2]
local user = redis.call('HGET', ck, 'u')
local user_topic = user and ('$user:' .. user)
local saved = {}
for i = 3, #ARGV, 2 do
  local topic, cursor = ARGV[i], ARGV[i + 1]
  local field = 't:' .. topic
  if redis.call('HEXISTS', ck, field) == 1 then
    redis.call('HSET', ck, field, cursor)
    if topic == user_topic then
      saved = { topic, cursor }
    end
  end
end
return saved
