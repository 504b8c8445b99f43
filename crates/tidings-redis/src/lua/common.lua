-- Shared by every script. ARGV[1] is the base of the keys the script touches, which is also the
-- one key it declares (see layout.rs): the session keys' base, or the base of a topic group.
-- Every key of one script shares that base.
--
-- Topic keys (P = the base of the topic's group):
--   P t:<topic>  stream of records, entry id <offset>-0, fields r (record), n (size) and w (when
--                appended, in ms)
--   P m:<topic>  hash: epoch, last (offset), first (oldest retained offset), bytes, age (the
--                last append's age bound in ms, 0 for none), and for a user's topic, mark (the
--                offset the user's channels took it to)
--   P topics     sorted set: topic -> when last appended to (or found followed), in ms, plus
--                its age bound
--   P heads      the pub/sub channel appends and drops are announced on (see heads.rs), with
--                PUBLISH on one server and SPUBLISH (sharded pub/sub) on a cluster; PUBLISH is
--                set before this file
-- Session keys (P = the sessions' base):
--   P s:<topic>  set of the channel ids following the topic
--   P c:<id>     hash: u user, x attributes (JSON), k close ("<code> <reason>"), a alias,
--                e ended ("1"), and t:<topic> -> "<epoch>:<offset>" per followed topic
--   P a:<alias>  the id of the channel holding the alias
--   P r:<id>     the receiver lock: the holder, with an expiry
--   P u:<user>   set of the user's channel ids
--   P expiry     sorted set: channel id -> when it expires, in ms
-- On one server both bases are the prefix. On a cluster each is a hash tag, so a script's keys
-- are all in the slot of the key it declares.
local P = ARGV[1]

-- Lua prints large numbers in exponent form; stream ids and cursors need every digit.
local function int(n)
  return string.format('%d', n)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- How much longer than its expiry a channel's keys live, should no node sweep them.
local BACKSTOP_MS = 600000

-- Makes sure the topic exists, creating it in `epoch` if not. Returns epoch, last, first.
local function topic_meta(topic, epoch)
  local mk = P .. 'm:' .. topic
  local meta = redis.call('HMGET', mk, 'epoch', 'last', 'first')
  if meta[1] then
    return meta[1], tonumber(meta[2]), tonumber(meta[3])
  end
  redis.call('HSET', mk, 'epoch', epoch, 'last', 0, 'first', 1, 'bytes', 0)
  redis.call('ZADD', P .. 'topics', now_ms(), topic)
  return epoch, 0, 1
end

-- Drops a topic's oldest records while `drop(entry fields, first, bytes)` says so, keeping at
-- least the newest `keep` (0 or 1). Records the stream lacks are skipped.
local function trim(topic, last, keep, drop)
  local mk, sk = P .. 'm:' .. topic, P .. 't:' .. topic
  local first = tonumber(redis.call('HGET', mk, 'first'))
  local bytes = tonumber(redis.call('HGET', mk, 'bytes'))
  while first <= last - keep do
    local id = int(first) .. '-0'
    local entry = redis.call('XRANGE', sk, id, id)
    if entry[1] then
      local fields = entry[1][2]
      if not drop(fields, first, bytes) then
        break
      end
      bytes = bytes - tonumber(fields[4])
      redis.call('XDEL', sk, id)
    end
    first = first + 1
  end
  redis.call('HSET', mk, 'first', first, 'bytes', bytes)
  return first
end

-- Drops the records of a topic older than its age bound.
local function drop_aged(topic, last, now)
  local age = tonumber(redis.call('HGET', P .. 'm:' .. topic, 'age') or '0')
  if age == 0 then
    return
  end
  trim(topic, last, 0, function(fields)
    return tonumber(fields[6] or now) + age <= now
  end)
end

-- Its followers are in the session keys: a topic is dropped once it has none.
local function drop_topic(topic)
  redis.call('DEL', P .. 't:' .. topic, P .. 'm:' .. topic)
  redis.call('ZREM', P .. 'topics', topic)
  redis.call(PUBLISH, P .. 'heads', cjson.encode({ t = topic, d = 1 }))
end

-- Sets when a channel expires, and lets its keys outlive that by the backstop.
local function expire_at(id, at)
  redis.call('ZADD', P .. 'expiry', at, id)
  local ttl = at - now_ms() + BACKSTOP_MS
  redis.call('PEXPIRE', P .. 'c:' .. id, ttl)
  local alias = redis.call('HGET', P .. 'c:' .. id, 'a')
  if alias then
    redis.call('PEXPIRE', P .. 'a:' .. alias, ttl)
  end
end

-- Removes a channel and everything in the session keys that refers to it. Returns its hash,
-- flat, or nil. Its private topic is in the topic keys, dropped by the caller.
local function remove_channel(id)
  local ck = P .. 'c:' .. id
  local state = redis.call('HGETALL', ck)
  redis.call('ZREM', P .. 'expiry', id)
  redis.call('DEL', P .. 'r:' .. id)
  if #state == 0 then
    return nil
  end
  for i = 1, #state, 2 do
    local field, value = state[i], state[i + 1]
    if string.sub(field, 1, 2) == 't:' then
      redis.call('SREM', P .. 's:' .. string.sub(field, 3), id)
    elseif field == 'a' then
      if redis.call('GET', P .. 'a:' .. value) == id then
        redis.call('DEL', P .. 'a:' .. value)
      end
    elseif field == 'u' then
      redis.call('SREM', P .. 'u:' .. value, id)
    end
  end
  redis.call('DEL', ck)
  return state
end

-- The members of a set whose channel still exists; drops the others (left by the backstop).
local function live_members(key)
  local live = {}
  for _, id in ipairs(redis.call('SMEMBERS', key)) do
    if redis.call('EXISTS', P .. 'c:' .. id) == 1 then
      live[#live + 1] = id
    else
      redis.call('SREM', key, id)
    end
  end
  return live
end

-- The ids of a user's open (not closed) channels.
local function open_channels(user)
  local open = {}
  for _, id in ipairs(live_members(P .. 'u:' .. user)) do
    if redis.call('HEXISTS', P .. 'c:' .. id, 'k') == 0 then
      open[#open + 1] = id
    end
  end
  return open
end
