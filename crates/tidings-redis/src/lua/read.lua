-- Topic keys. ARGV: base, topic, cursor epoch, first offset wanted, max, epoch for a new topic.
-- Reads from the wanted offset, or from the oldest retained one when the wanted one is gone or
-- of another epoch. Returns {epoch, last, first, entries}.
local topic, max = ARGV[2], tonumber(ARGV[5])
local epoch, last, first = topic_meta(topic, ARGV[6])
local from = first
if ARGV[3] == epoch and tonumber(ARGV[4]) > first then
  from = tonumber(ARGV[4])
end
local entries = {}
if max > 0 and from <= last then
  entries = redis.call('XRANGE', P .. 't:' .. topic, int(from) .. '-0', '+', 'COUNT', max)
end
return { epoch, last, first, entries }
