"""Lua scripts for the live view. Each runs atomically on the keys of one customer.

A batch's markers and counter updates travel as one MessagePack argument rather than
thousands of separate ones: packing each argument costs the web process more than the
script costs Redis. KEYS[1] is always the customer's index key, whose hash tag `{customer}`
routes the call in a Redis Cluster; every other key the script touches carries the same
tag, so it lives in the same slot.
"""

from __future__ import annotations

# KEYS[1]: the customer's index key (routing). ARGV[1]: the marker key prefix
# (`ld:{customer}:`); ARGV[2]: msgpack [[eventId, fingerprint], ...].
# Returns, per event: 0 unknown, 1 same fingerprint (duplicate), 2 other (conflict).
CHECK_MARKERS = """
local prefix = ARGV[1]
local pairs_ = cmsgpack.unpack(ARGV[2])
local out = {}
for i, pair in ipairs(pairs_) do
  local seen = redis.call('GET', prefix .. pair[1])
  if not seen then out[i] = 0 elseif seen == pair[2] then out[i] = 1 else out[i] = 2 end
end
return out
"""

# KEYS[1]: the customer's index key. ARGV[1]: marker key prefix; ARGV[2]: marker TTL (s);
# ARGV[3]: msgpack [[eventId, fingerprint], ...]; ARGV[4]: msgpack list of ops:
#   {'s', key, field, whole, fraction, high}  (an exact amount as integer limbs: whole
#   units, 10^-12 units and 10^12 units, each below 10^12)
#   {'c', key, field, n} {'m', key, field, value}
#   {'l', key, field, value, micros} {'u', key, field, setkey, {member, ...}}
#   {'e', key, expireat, bucket}  (expire the hour key and index it)  {'x', key, expireat}
# Markers are set first with NX; if any already exists (a concurrent request carried the
# same event), the markers this call set are removed again, nothing else changes, and the
# 1-based positions that were taken are returned so the caller can leave those events out.
APPLY_BATCH = """
-- Lua numbers are doubles, exact below 2^53: a limb is carried into the next one once it
-- passes 10^15, so every number this script handles stays exact.
local LIMB, CARRY_AT = 1000000000000, 1000000000000000
local function add_limb(key, fld, amount, always)
  if amount == 0 and not always then return 0 end
  local total = redis.call('HINCRBY', key, fld, amount)
  if total < CARRY_AT then return 0 end
  local carry = math.floor(total / LIMB)
  redis.call('HINCRBY', key, fld, -carry * LIMB)
  return carry
end
-- Non-negative plain decimals ("12.5") compared exactly, as text.
local function dec_gt(a, b)
  local ai, af = string.match(a, '^(%d*)%.?(%d*)$')
  local bi, bf = string.match(b, '^(%d*)%.?(%d*)$')
  ai = string.gsub(ai, '^0+', ''); bi = string.gsub(bi, '^0+', '')
  if #ai ~= #bi then return #ai > #bi end
  if ai ~= bi then return ai > bi end
  local width = math.max(#af, #bf)
  af = af .. string.rep('0', width - #af); bf = bf .. string.rep('0', width - #bf)
  return af > bf
end
local prefix = ARGV[1]
local ttl = tonumber(ARGV[2])
local markers = cmsgpack.unpack(ARGV[3])
local taken = {}
local mine = {}
for i, pair in ipairs(markers) do
  local key = prefix .. pair[1]
  if redis.call('SET', key, pair[2], 'NX', 'EX', ttl) then
    mine[#mine + 1] = key
  else
    taken[#taken + 1] = i
  end
end
if #taken > 0 then
  for _, key in ipairs(mine) do redis.call('DEL', key) end
  return taken
end
for _, op in ipairs(cmsgpack.unpack(ARGV[4])) do
  local kind, key = op[1], op[2]
  if kind == 's' then
    local carry = add_limb(key, op[3] .. '~f', op[5], false)
    -- the whole-units field is always written, so a sum of zeros still shows as 0
    carry = add_limb(key, op[3], op[4] + carry, true)
    if op[6] + carry ~= 0 then redis.call('HINCRBY', key, op[3] .. '~h', op[6] + carry) end
  elseif kind == 'c' then
    redis.call('HINCRBY', key, op[3], op[4])
  elseif kind == 'm' then
    local cur = redis.call('HGET', key, op[3])
    if (not cur) or dec_gt(op[4], cur) then redis.call('HSET', key, op[3], op[4]) end
  elseif kind == 'l' then
    local cur = redis.call('HGET', key, '@' .. op[3])
    if (not cur) or tonumber(op[5]) >= tonumber(cur) then
      redis.call('HSET', key, op[3], op[4], '@' .. op[3], op[5])
    end
  elseif kind == 'u' then
    for _, member in ipairs(op[5]) do redis.call('SADD', op[4], member) end
    redis.call('HSET', key, op[3], redis.call('SCARD', op[4]))
  elseif kind == 'e' then
    redis.call('EXPIREAT', key, op[3])
    redis.call('ZADD', KEYS[1], op[4], key)
  elseif kind == 'x' then
    redis.call('EXPIREAT', key, op[3])
  else
    return redis.error_reply('unknown op ' .. tostring(kind))
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
