"""Lua scripts for the live view. Each runs atomically on the keys of one customer.

A batch's markers and counter updates travel as one MessagePack argument rather than
thousands of separate ones: packing each argument costs the web process more than the
script costs Redis. KEYS[1] is always the customer's index key, whose hash tag `{customer}`
routes the call in a Redis Cluster; every other key the script touches carries the same
tag, so it lives in the same slot.
"""

from __future__ import annotations

# Event ids per HMGET/HSET call: Lua's unpack() is bounded by its C stack (8000 values).
_CHUNK = """
local CHUNK = 2000
-- For each event id, its marker (fingerprint digits) in window `cur` or else `prev`, or false.
local function lookup(cur, prev, ids)
  local seen = {}
  for s = 1, #ids, CHUNK do
    local e = math.min(s + CHUNK - 1, #ids)
    local a = redis.call('HMGET', cur, unpack(ids, s, e))
    local b = redis.call('HMGET', prev, unpack(ids, s, e))
    for j = s, e do seen[j] = a[j - s + 1] or b[j - s + 1] end
  end
  return seen
end
"""

# KEYS[1]: the customer's index key (routing). ARGV[1], ARGV[2]: the customer's marker hashes
# of the current and the previous window; ARGV[3]: msgpack [[eventId, ...], [fingerprint, ...]].
# Returns, per event: 0 unknown, 1 same fingerprint (duplicate), 2 other (conflict).
CHECK_MARKERS = (
    _CHUNK
    + """
local batch = cmsgpack.unpack(ARGV[3])
local ids, prints = batch[1], batch[2]
local seen = lookup(ARGV[1], ARGV[2], ids)
local out = {}
for i = 1, #ids do
  if not seen[i] then out[i] = 0 elseif seen[i] == prints[i] then out[i] = 1 else out[i] = 2 end
end
return out
"""
)

# The counter updates, shared by the ingest's apply and the worker's correction. Each op:
#   {'s', key, field, whole, fraction, high}  (an exact amount as integer limbs: whole
#   units, 10^-12 units and 10^12 units, each of magnitude below 10^12; negative in a
#   correction)
#   {'c', key, field, n} {'m', key, field, value}
#   {'l', key, field, value, micros} {'u', key, field, setkey, {member, ...}}
#   {'e', key, expireat, bucket}  (expire the hour key and index it)  {'x', key, expireat}
#   and from an event correction (portal/ingest/corrections.py): {'S', key, field, value or
#   false} (a max set, or removed), {'T', key, field, value, micros} (a latest set),
#   {'r', key, field, setkey, {member, ...}} (distinct values taken out)
_RUN_OPS = """
-- Lua numbers are doubles, exact below 2^53: a limb is carried into the next one once its
-- magnitude passes 10^15, so every number this script handles stays exact.
local LIMB, CARRY_AT = 1000000000000, 1000000000000000
local function add_limb(key, fld, amount, always)
  if amount == 0 and not always then return 0 end
  local total = redis.call('HINCRBY', key, fld, amount)
  if total < CARRY_AT and total > -CARRY_AT then return 0 end
  local carry
  if total > 0 then carry = math.floor(total / LIMB) else carry = -math.floor(-total / LIMB) end
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
-- The period accumulators (`le:`/`leu:`, see redis_keys) an hour key's totals also go to:
-- per hour key, the accumulator's key and set key when it covers that hour, else false.
local periods = {}
local function period_of(key)
  local cached = periods[key]
  if cached ~= nil then return cached end
  local found = false
  local prefix, bucket = string.match(key, '^lu:(.*):(%d+)$')
  if prefix then
    local acc = 'le:' .. prefix
    local bounds = redis.call('HMGET', acc, 'start', 'end')
    local b = tonumber(bucket)
    if bounds[1] and b >= tonumber(bounds[1]) and b < tonumber(bounds[2]) then
      found = {acc, 'leu:' .. prefix}
    end
  end
  periods[key] = found
  return found
end
local function apply_op(op, key, fld)
  local kind = op[1]
  if kind == 's' then
    local carry = add_limb(key, fld .. '~f', op[5], false)
    -- the whole-units field is always written, so a sum of zeros still shows as 0
    carry = add_limb(key, fld, op[4] + carry, true)
    if op[6] + carry ~= 0 then redis.call('HINCRBY', key, fld .. '~h', op[6] + carry) end
  elseif kind == 'c' then
    redis.call('HINCRBY', key, fld, op[4])
  elseif kind == 'm' then
    local cur = redis.call('HGET', key, fld)
    if (not cur) or dec_gt(op[4], cur) then redis.call('HSET', key, fld, op[4]) end
  elseif kind == 'l' then
    local cur = redis.call('HGET', key, '@' .. fld)
    if (not cur) or tonumber(op[5]) >= tonumber(cur) then
      redis.call('HSET', key, fld, op[4], '@' .. fld, op[5])
    end
  end
end
local function run_ops(index_key, ops)
  for _, op in ipairs(ops) do
    local kind, key = op[1], op[2]
    -- An hour's total ('=') counts in the period accumulator covering that hour too, in
    -- the same script: a check reads one key and is never behind the hours.
    if op[3] == '=' and kind ~= 'e' and kind ~= 'x' then
      local period = period_of(key)
      if period and (kind == 'S' or kind == 'T' or kind == 'r') then
        -- a value set or taken out cannot be carried into the period's: the next check
        -- refills the accumulator from the hours
        redis.call('DEL', period[1], period[2])
        periods[key] = false
      elseif period then
        if kind == 'u' then
          for _, member in ipairs(op[5]) do redis.call('SADD', period[2], member) end
          redis.call('HSET', period[1], '=', redis.call('SCARD', period[2]))
        else
          apply_op(op, period[1], '=')
        end
      end
    end
    if kind == 's' or kind == 'c' or kind == 'm' or kind == 'l' then
      apply_op(op, key, op[3])
    elseif kind == 'u' then
      for _, member in ipairs(op[5]) do redis.call('SADD', op[4], member) end
      redis.call('HSET', key, op[3], redis.call('SCARD', op[4]))
    elseif kind == 'S' then
      if op[4] then
        redis.call('HSET', key, op[3], op[4])
      else
        redis.call('HDEL', key, op[3], op[3] .. '~f', op[3] .. '~h', '@' .. op[3])
      end
    elseif kind == 'T' then
      redis.call('HSET', key, op[3], op[4], '@' .. op[3], op[5])
    elseif kind == 'r' then
      for _, member in ipairs(op[5]) do redis.call('SREM', op[4], member) end
      redis.call('HSET', key, op[3], redis.call('SCARD', op[4]))
    elseif kind == 'e' then
      redis.call('EXPIREAT', key, op[3])
      redis.call('ZADD', index_key, op[4], key)
    elseif kind == 'x' then
      redis.call('EXPIREAT', key, op[3])
    else
      return redis.error_reply('unknown op ' .. tostring(kind))
    end
  end
end
"""

# KEYS[1]: the customer's index key. ARGV[1], ARGV[2]: the customer's marker hashes of the
# current and the previous window; ARGV[3]: EXPIREAT of the current one; ARGV[4]: msgpack
# [[eventId, ...], [fingerprint, ...]]; ARGV[5]: msgpack list of ops (above), for every
# event; ARGV[6]: this batch's applied key; ARGV[7]: its TTL (s).
#
# Applying a batch twice counts it once (a retry after a lost reply): the first run sets the
# applied key to '1', and a second finds it and returns {-1}. If the persist worker settled
# the batch first ('w', see SETTLE_BATCHES), the markers are set and nothing is counted.
# Otherwise the markers of events not yet marked are set, every event is counted, and the
# 1-based positions of the events another request marked first (between our check and now)
# are returned: the answer calls them duplicates, but both copies are in the broker and the
# live view must not miss the one the ledger keeps, so both are counted and the worker
# subtracts the one the ledger refuses.
APPLY_BATCH = (
    _CHUNK
    + _RUN_OPS
    + """
local counted = redis.call('GET', ARGV[6])
if counted == '1' then return {-1} end
local batch = cmsgpack.unpack(ARGV[4])
local ids, prints = batch[1], batch[2]
local seen = lookup(ARGV[1], ARGV[2], ids)
local taken, fresh = {}, {}
for i = 1, #ids do
  if seen[i] then
    taken[#taken + 1] = i
  else
    fresh[#fresh + 1] = ids[i]; fresh[#fresh + 1] = prints[i]
  end
end
for s = 1, #fresh, 2 * CHUNK do
  redis.call('HSET', ARGV[1], unpack(fresh, s, math.min(s + 2 * CHUNK - 1, #fresh)))
end
if #fresh > 0 then redis.call('EXPIREAT', ARGV[1], ARGV[3]) end
-- 'w': the persist worker settled the batch first and counted what the ledger admitted;
-- the markers are still the web's to set, so a resend is answered as a duplicate. The
-- markers found were set by that settle, for this very batch's events: none is another
-- request's, so none is answered as a duplicate (a copy another request carried was
-- refused by the ledger and is counted once all the same).
if counted then return {} end
run_ops(KEYS[1], cmsgpack.unpack(ARGV[5]))
redis.call('SET', ARGV[6], '1', 'EX', ARGV[7])
return taken
"""
)

# KEYS[1]: the customer's index key. ARGV[1]: the message's corrected key; ARGV[2]: its TTL;
# ARGV[3]: the settled applied keys' TTL (s); ARGV[4]: msgpack list of {applied key, ops
# (above) counting the events this message's commit admitted, ops subtracting the copies the
# ledger refused, the marker hash to mark the admitted events in, its EXPIREAT, their ids,
# their fingerprint digits}, one per batch of the customer in the message.
#
# After the commit, per batch: if the web counted it ("1"), its refused copies are taken out
# (once per message: the corrected key); if nobody did, the worker counts what the ledger
# admitted, sets its dedup markers, and marks the batch "w", so a late apply by the web
# counts nothing and a resend is answered as a duplicate; a batch already "w" gets what this
# commit admitted too (a concurrent delivery that admitted nothing may settle first). A
# redelivery admits nothing new and corrects nothing again. Keys all carry the customer's tag.
SETTLE_BATCHES = (
    _CHUNK
    + _RUN_OPS
    + """
local entries = cmsgpack.unpack(ARGV[4])
local may_correct = nil
for _, e in ipairs(entries) do
  local state = redis.call('GET', e[1])
  if state == '1' then
    if #e[3] > 0 then
      if may_correct == nil then
        may_correct = redis.call('SET', ARGV[1], '1', 'NX', 'EX', ARGV[2]) and true or false
      end
      if may_correct then run_ops(KEYS[1], e[3]) end
    end
    redis.call('EXPIRE', e[1], ARGV[3])
  else
    -- Nobody counted it, or a worker did ('w'): count what this commit admitted. The ledger
    -- admits each event once across all commits, so two deliveries of one message settling
    -- in either order (the one that admitted nothing first) still count each event once.
    run_ops(KEYS[1], e[2])
    local ids, prints, marks = e[6], e[7], {}
    for i = 1, #ids do marks[#marks + 1] = ids[i]; marks[#marks + 1] = prints[i] end
    for s = 1, #marks, 2 * CHUNK do
      redis.call('HSET', e[4], unpack(marks, s, math.min(s + 2 * CHUNK - 1, #marks)))
    end
    if #ids > 0 then redis.call('EXPIREAT', e[4], e[5]) end
    redis.call('SET', e[1], 'w', 'EX', ARGV[3])
  end
end
return 1
"""
)

# KEYS[1]: the customer's index key. ARGV[1]: the message's corrected key; ARGV[2]: its TTL
# (s); ARGV[3]: msgpack list of ops (above) subtracting the message's late duplicates.
# Runs once per message and customer: a redelivered message corrects nothing again.
CORRECT_BATCH = (
    _RUN_OPS
    + """
if not redis.call('SET', ARGV[1], '1', 'NX', 'EX', ARGV[2]) then return 0 end
run_ops(KEYS[1], cmsgpack.unpack(ARGV[3]))
return 1
"""
)

# KEYS[1]: the customer's index key (routing). ARGV[1]: a meter's period accumulator
# (`le:`), ARGV[2]: its distinct-values set (`leu:`), ARGV[3], ARGV[4]: the period's first
# and end bucket (epoch seconds, as text), ARGV[5]: the meter's aggregation, ARGV[6]: the
# accumulator's EXPIREAT, ARGV[7]: msgpack list of the period's hour keys, ARGV[8]: msgpack
# list of its hours' distinct-value sets (unique_count meters).
#
# Fills the accumulator from the hours when it covers another period (or none): from then on
# every op on an hour it covers is added to it too (`run_ops`). Atomic with those ops, so
# nothing is counted twice or missed between the fill and the next batch. Returns the
# accumulator's '=' limbs.
INIT_PERIOD = (
    _RUN_OPS
    + """
local acc, set_key, agg = ARGV[1], ARGV[2], ARGV[5]
local bounds = redis.call('HMGET', acc, 'start', 'end')
if bounds[1] ~= ARGV[3] or bounds[2] ~= ARGV[4] then
  redis.call('DEL', acc, set_key)
  if agg == 'unique_count' then
    local sets = cmsgpack.unpack(ARGV[8])
    for s = 1, #sets, 500 do
      redis.call('SUNIONSTORE', set_key, set_key, unpack(sets, s, math.min(s + 499, #sets)))
    end
    redis.call('HSET', acc, '=', redis.call('SCARD', set_key))
    redis.call('EXPIREAT', set_key, ARGV[6])
  else
    for _, hkey in ipairs(cmsgpack.unpack(ARGV[7])) do
      local h = redis.call('HMGET', hkey, '=', '=~f', '=~h', '@=')
      if h[1] or h[2] or h[3] then
        if agg == 'sum' then
          local whole, fraction, high = tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0')
          apply_op({'s', acc, '=', whole, fraction, high}, acc, '=')
        elseif agg == 'count' then
          apply_op({'c', acc, '=', tonumber(h[1])}, acc, '=')
        elseif agg == 'max' then
          apply_op({'m', acc, '=', h[1]}, acc, '=')
        elseif agg == 'latest' and h[4] then
          apply_op({'l', acc, '=', h[1], h[4]}, acc, '=')
        end
      end
    end
  end
  redis.call('HSET', acc, 'start', ARGV[3], 'end', ARGV[4])
  redis.call('EXPIREAT', acc, ARGV[6])
end
return redis.call('HMGET', acc, '=', '=~f', '=~h')
"""
)

# KEYS[1]: the customer's index key (routing). ARGV: that customer's period accumulators.
# Returns, per accumulator, {start, end, '=', '=~f', '=~h'} (false where absent): a batch of
# checks reads each customer's meters in one call, not one command per meter.
READ_PERIODS = """
local out = {}
for i = 1, #ARGV do
  out[i] = redis.call('HMGET', ARGV[i], 'start', 'end', '=', '=~f', '=~h')
end
return out
"""

# KEYS[1]: the first hour's key (it names the customer's slot); ARGV[1]: the meter's hour-key
# prefix, ARGV[2..]: the hours' buckets. Returns {n, '=', '=~f', '=~h', ...} for the hours that
# hold a total (n: the hour's place in ARGV[2..], from 1; false where a limb is absent): a
# period's series reads its total limbs only, in one call, not every group field of 744 hashes.
READ_HOUR_TOTALS = """
local out = {}
for i = 2, #ARGV do
  local limbs = redis.call('HMGET', ARGV[1] .. ARGV[i], '=', '=~f', '=~h')
  if limbs[1] or limbs[2] or limbs[3] then
    out[#out + 1] = i - 1
    out[#out + 1] = limbs[1]
    out[#out + 1] = limbs[2]
    out[#out + 1] = limbs[3]
  end
end
return out
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

# KEYS[1]: the in-flight ZSET (`live:inflight`). Returns {batches in flight, the oldest one's
# score or false, the server's TIME seconds, microseconds}: the watermark's inputs read on
# the node that holds the ZSET, in one round trip (a cluster pipeline cannot carry TIME,
# which names no key).
IN_FLIGHT = """
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local t = redis.call('TIME')
return {redis.call('ZCARD', KEYS[1]), oldest[2] or false, t[1], t[2]}
"""
