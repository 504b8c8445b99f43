-- Session keys. ARGV: base, id, topic, its head (follow.lua made sure it exists), the cursor to
-- start from ('' for the head), the label ('' to keep the one there is, else '=' and the
-- label). Returns "<epoch>:<offset>", or nil for an unknown channel.
local id, topic, from, label = ARGV[2], ARGV[3], ARGV[5], ARGV[6]
local ck = P .. 'c:' .. id
if redis.call('EXISTS', ck) == 0 then
  return nil
end
if label ~= '' then
  redis.call('HSET', ck, 'l:' .. topic, string.sub(label, 2))
end
local field = 't:' .. topic
local cursor = redis.call('HGET', ck, field)
if cursor then
  return cursor
end
if from ~= '' then
  cursor = from
else
  cursor = ARGV[4]
end
redis.call('SADD', P .. 's:' .. topic, id)
redis.call('HSET', ck, field, cursor)
return cursor
