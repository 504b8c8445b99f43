-- Session keys. ARGV: base, id or alias, 'alias' to look the channel up by alias.
-- Returns {id, hash}, or nil.
local id = ARGV[2]
if ARGV[3] == 'alias' then
  id = redis.call('GET', P .. 'a:' .. id)
  if not id then
    return nil
  end
end
local state = redis.call('HGETALL', P .. 'c:' .. id)
if #state == 0 then
  return nil
end
return { id, state }
