-- ARGV: prefix, id, alias ('' for none), user ('' for none), attributes (JSON), ttl in ms,
-- then pairs of topic and the epoch to give it if new.
-- Returns {id, hash} of the channel stored, or of the one already holding the alias.
local id, alias, user = ARGV[2], ARGV[3], ARGV[4]
if alias ~= '' then
  local holder = redis.call('GET', P .. 'a:' .. alias)
  if holder then
    local state = redis.call('HGETALL', P .. 'c:' .. holder)
    if #state > 0 then
      return { holder, state }
    end
  end
  redis.call('SET', P .. 'a:' .. alias, id)
end
local ck = P .. 'c:' .. id
redis.call('HSET', ck, 'x', ARGV[5])
if alias ~= '' then
  redis.call('HSET', ck, 'a', alias)
end
if user ~= '' then
  redis.call('HSET', ck, 'u', user)
  redis.call('SADD', P .. 'u:' .. user, id)
end
for i = 7, #ARGV, 2 do
  local topic = ARGV[i]
  local epoch, last = topic_meta(topic, ARGV[i + 1])
  redis.call('SADD', P .. 's:' .. topic, id)
  redis.call('HSET', ck, 't:' .. topic, epoch .. ':' .. int(last))
end
expire_at(id, now_ms() + tonumber(ARGV[6]))
return { id, redis.call('HGETALL', ck) }
