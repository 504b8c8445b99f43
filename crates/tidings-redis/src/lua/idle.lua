-- Topic keys. ARGV: base, idle in ms, max. The first step of dropping idle topics: up to max
-- topics of the group that saw no append for idle (plus their age bound: the score of a topic
-- is when it was last appended to, or found followed, plus that bound). Returns {cutoff,
-- topics}, the cutoff being the score at or below which a topic counts as idle.
local idle, max = tonumber(ARGV[2]), tonumber(ARGV[3])
local cutoff = now_ms() - idle
return { int(cutoff), redis.call('ZRANGEBYSCORE', P .. 'topics', '-inf', cutoff, 'LIMIT', 0, max) }
