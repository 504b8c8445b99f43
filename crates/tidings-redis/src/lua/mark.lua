-- Topic keys. ARGV: base, a user's topic, the "<epoch>:<offset>" one of its channels took it
-- to. Moves the topic's mark forward to there, in its epoch.
local mk = P .. 'm:' .. ARGV[2]
local epoch, offset = string.match(ARGV[3], '^(%d+):(%d+)$')
local meta = redis.call('HMGET', mk, 'epoch', 'last', 'mark')
if meta[1] and meta[1] == epoch then
  local mark = math.min(tonumber(offset), tonumber(meta[2]))
  if mark > tonumber(meta[3] or '0') then
    redis.call('HSET', mk, 'mark', mark)
  end
end
return 0
