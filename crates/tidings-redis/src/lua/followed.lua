-- Session keys. ARGV: base, then topics. The second step of dropping idle topics: for each,
-- 1 if an existing channel follows it, else 0 (forgetting followers whose channel is gone).
local flags = {}
for i = 2, #ARGV do
  flags[#flags + 1] = math.min(#live_members(P .. 's:' .. ARGV[i]), 1)
end
return flags
