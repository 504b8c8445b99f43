-- Session keys. ARGV: base, max. Removes up to max channels whose expiry has passed and whose
-- receiver lock is free. Returns a list of {id, hash}.
local max = tonumber(ARGV[2])
local taken = {}
if max == 0 then
  return taken
end
local due = redis.call('ZRANGEBYSCORE', P .. 'expiry', '-inf', now_ms(), 'LIMIT', 0, max + 256)
for _, id in ipairs(due) do
  if #taken >= max then
    break
  end
  if redis.call('EXISTS', P .. 'r:' .. id) == 0 then
    local state = remove_channel(id)
    if state then
      taken[#taken + 1] = { id, state }
    end
  end
end
return taken
