-- ARGV: prefix, id, then pairs of topic and "<epoch>:<offset>". Saves only followed topics.
local ck = P .. 'c:' .. ARGV[2]
for i = 3, #ARGV, 2 do
  local field = 't:' .. ARGV[i]
  if redis.call('HEXISTS', ck, field) == 1 then
    redis.call('HSET', ck, field, ARGV[i + 1])
  end
end
return 0
