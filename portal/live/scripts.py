"""Lua scripts for the live view. Each runs atomically on the keys of one customer."""

from __future__ import annotations

# KEYS: dedup marker keys. ARGV: their fingerprints, in the same order.
# Returns, per marker: 0 unknown, 1 same fingerprint (duplicate), 2 other fingerprint
# (conflict).
CHECK_MARKERS = """
local out = {}
for i, key in ipairs(KEYS) do
  local seen = redis.call('GET', key)
  if not seen then out[i] = 0 elseif seen == ARGV[i] then out[i] = 1 else out[i] = 2 end
end
return out
"""

# KEYS: [1] the customer's key index, then marker keys, hash keys and set keys.
# ARGV: [1] number of markers M, [2] marker TTL (s), [3..M+2] fingerprints, then ops.
# Markers are set first with NX; if any already exists (a concurrent request carried the
# same event), nothing else is changed and the 1-based marker positions that were taken
# are returned, so the caller can leave those events out of the counters.
# Ops (flat): s key field amount | c key field n | m key field value |
#             l key field value micros | u key field setkey n member… |
#             e key expireat bucket          (key arguments are indexes into KEYS)
APPLY_BATCH = """
local m = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local taken = {}
for i = 1, m do
  if not redis.call('SET', KEYS[1 + i], ARGV[2 + i], 'NX', 'EX', ttl) then
    taken[#taken + 1] = i
  end
end
if #taken > 0 then
  for i = 1, m do
    local mine = true
    for _, t in ipairs(taken) do if t == i then mine = false end end
    if mine then redis.call('DEL', KEYS[1 + i]) end
  end
  return taken
end
local a = m + 3
local n = #ARGV
while a <= n do
  local op = ARGV[a]
  local key = KEYS[tonumber(ARGV[a + 1])]
  if op == 's' then
    redis.call('HINCRBYFLOAT', key, ARGV[a + 2], ARGV[a + 3]); a = a + 4
  elseif op == 'c' then
    redis.call('HINCRBY', key, ARGV[a + 2], ARGV[a + 3]); a = a + 4
  elseif op == 'm' then
    local cur = redis.call('HGET', key, ARGV[a + 2])
    if (not cur) or tonumber(ARGV[a + 3]) > tonumber(cur) then
      redis.call('HSET', key, ARGV[a + 2], ARGV[a + 3])
    end
    a = a + 4
  elseif op == 'l' then
    local field = ARGV[a + 2]
    local cur = redis.call('HGET', key, '@' .. field)
    if (not cur) or tonumber(ARGV[a + 4]) >= tonumber(cur) then
      redis.call('HSET', key, field, ARGV[a + 3], '@' .. field, ARGV[a + 4])
    end
    a = a + 5
  elseif op == 'u' then
    local setkey = KEYS[tonumber(ARGV[a + 3])]
    local count = tonumber(ARGV[a + 4])
    for j = 1, count do redis.call('SADD', setkey, ARGV[a + 4 + j]) end
    redis.call('HSET', key, ARGV[a + 2], redis.call('SCARD', setkey))
    a = a + 5 + count
  elseif op == 'e' then
    redis.call('EXPIREAT', key, ARGV[a + 2])
    redis.call('ZADD', KEYS[1], ARGV[a + 3], key)
    a = a + 4
  elseif op == 'x' then
    redis.call('EXPIREAT', key, ARGV[a + 2]); a = a + 3
  else
    return redis.error_reply('unknown op ' .. tostring(op))
  end
end
return {}
"""

# KEYS: set keys to union, [last] a scratch key. Returns the size of the union.
UNION_COUNT = """
local scratch = KEYS[#KEYS]
local sources = {}
for i = 1, #KEYS - 1 do sources[i] = KEYS[i] end
if #sources == 0 then return 0 end
redis.call('SUNIONSTORE', scratch, unpack(sources))
local n = redis.call('SCARD', scratch)
redis.call('DEL', scratch)
return n
"""
