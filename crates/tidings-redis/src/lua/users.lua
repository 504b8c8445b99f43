-- Session keys. ARGV: base, what ('topic', 'online' or 'user'), topic or user name.
-- 'topic' and 'online': the user of every open channel following the topic, or of every open
-- channel ('' for anonymous). 'user': the ids of the user's open channels.
local what = ARGV[2]
if what == 'user' then
  return open_channels(ARGV[3])
end
local ids
if what == 'topic' then
  ids = live_members(P .. 's:' .. ARGV[3])
else
  ids = redis.call('ZRANGE', P .. 'expiry', 0, -1)
end
local users = {}
for _, id in ipairs(ids) do
  local found = redis.call('HMGET', P .. 'c:' .. id, 'u', 'x', 'k')
  if found[2] and not found[3] then
    users[#users + 1] = found[1] or ''
  end
end
return users
