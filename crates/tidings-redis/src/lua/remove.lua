-- Session keys. ARGV: base, id. Returns {id, hash} of the removed channel, or nil.
local state = remove_channel(ARGV[2])
if not state then
  return nil
end
return { ARGV[2], state }
