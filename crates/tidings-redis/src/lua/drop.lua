-- Topic keys. ARGV: base, then topics (the private topics of removed channels). Drops them.
for i = 2, #ARGV do
  drop_topic(ARGV[i])
end
return 0
