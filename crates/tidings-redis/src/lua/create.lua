-- Session keys. ARGV: base, id, alias ('' for none), user ('' for none), attributes (JSON), ttl
-- in ms, the most open channels the user may have, the user topic the channel starts on the
-- backlog of if the user has no open channel ('' for none) and where that backlog starts, then
-- pairs of topic and its head (follow.lua made sure each exists).
-- Returns {'existing', id, hash} of the channel already holding the alias, {'full'} when the user
-- has the most open channels allowed, else {'created', id, hash} of the channel stored.
local id, alias, user, limit = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[7])
if alias ~= '' then
  local holder = redis.call('GET', P .. 'a:' .. alias)
  if holder then
    local state = redis.call('HGETALL', P .. 'c:' .. holder)
    if #state > 0 then
      return { 'existing', holder, state }
    end
  end
end
-- Counted in the script that creates, so simultaneous creations cannot all pass.
local open = 0
if user ~= '' then
  open = #open_channels(user)
  if open >= limit then
    return { 'full' }
  end
end
-- A user with no open channel gets what was sent to it since its channels last took the
-- user's topic (the mark).
local backlog = ''
if open == 0 then
  backlog = ARGV[8]
end
if alias ~= '' then
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
for i = 10, #ARGV, 2 do
  local topic, start = ARGV[i], ARGV[i + 1]
  if topic == backlog then
    start = ARGV[9]
  end
  redis.call('SADD', P .. 's:' .. topic, id)
  redis.call('HSET', ck, 't:' .. topic, start)
end
expire_at(id, now_ms() + tonumber(ARGV[6]))
return { 'created', id, redis.call('HGETALL', ck) }
