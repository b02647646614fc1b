"""The Lua script behind ``CircuitBreaker(redis=...)``: the whole shared breaker.

One hash per breaker (``{cb:NAME}``, a hash tag so Redis Cluster keeps it on
one node) holds the state, the open-until time, the epoch, the count-window
ring (one byte per call: 0 ok, 1 failed, 2 slow, 3 failed and slow) or the
time buckets (``b:c:IDX`` calls, ``b:f:IDX`` failures, ``b:s:IDX`` slow calls),
and the half-open probe counts. Every operation is one script run, atomic on
the server, with the server's clock.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BREAKER_LUA"]

# The whole shared breaker: one hash per breaker, one script, the server's clock.
# ARGV: op, is_count, size (calls, or bucket microseconds), min_calls, failure_rate,
# slow_rate, open_us, probes, op args...
# Returns {state, remaining_us (-1 forced), epoch, opened_now, probe_granted}.
BREAKER_LUA: Final = """
local k = KEYS[1]
local op = ARGV[1]
local is_count = tonumber(ARGV[2]) == 1
local size = tonumber(ARGV[3])
local min_calls = tonumber(ARGV[4])
local fr = tonumber(ARGV[5])
local sr = tonumber(ARGV[6])
local open_us = tonumber(ARGV[7])
local probes = tonumber(ARGV[8])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', k, 'st', 'ou', 'ep', 'ring', 'rp', 'rn', 'rf', 'rs',
                      'hi', 'hd', 'hf', 'hs')
local st = tonumber(h[1]) or 0
local ou = tonumber(h[2]) or 0
local ep = tonumber(h[3]) or 1
local opened = 0
local granted = 0

local function clear_window()
  redis.call('HDEL', k, 'ring', 'rp', 'rn', 'rf', 'rs')
  local fields = redis.call('HKEYS', k)
  for _, f in ipairs(fields) do
    if string.sub(f, 1, 2) == 'b:' then redis.call('HDEL', k, f) end
  end
end

local function to_open(us)
  if st ~= 1 then opened = 1 end
  st = 1
  ep = ep + 1
  if us < 0 then ou = -1 else ou = now + us end
  clear_window()
  redis.call('HSET', k, 'st', 1, 'ou', string.format('%.0f', ou), 'ep', ep)
end

local function to_closed()
  st = 0
  ep = ep + 1
  clear_window()
  redis.call('HSET', k, 'st', 0, 'ep', ep)
end

if op == 'reset' then
  to_closed()
elseif op == 'force' then
  to_open(tonumber(ARGV[9]))
elseif op == 'record' and st == 0 then
  local n_ok, n_fail = tonumber(ARGV[9]), tonumber(ARGV[10])
  local n_sok, n_sfail = tonumber(ARGV[11]), tonumber(ARGV[12])
  local calls, fails, slows
  if is_count then
    local ring = h[4] or ''
    local rp, rn = tonumber(h[5]) or 0, tonumber(h[6]) or 0
    fails, slows = tonumber(h[7]) or 0, tonumber(h[8]) or 0
    local cells = {}
    for i = 1, string.len(ring) do cells[i] = string.byte(ring, i) - 48 end
    local function push(code, count)
      for _ = 1, math.min(count, size) do
        local old = cells[rp + 1]
        if rn == size and old then
          if old % 2 == 1 then fails = fails - 1 end
          if old >= 2 then slows = slows - 1 end
        else
          rn = rn + 1
        end
        cells[rp + 1] = code
        if code % 2 == 1 then fails = fails + 1 end
        if code >= 2 then slows = slows + 1 end
        rp = (rp + 1) % size
      end
    end
    push(0, n_ok); push(2, n_sok); push(1, n_fail); push(3, n_sfail)
    local chars = {}
    for i = 1, #cells do chars[i] = string.char(cells[i] + 48) end
    redis.call('HSET', k, 'ring', table.concat(chars), 'rp', rp, 'rn', rn, 'rf', fails, 'rs', slows)
    calls = rn
    if calls < math.min(min_calls, size) then calls = -1 end
  else
    local idx = math.floor(now / size)
    local total = n_ok + n_fail + n_sok + n_sfail
    if total > 0 then
      redis.call('HINCRBY', k, 'b:c:' .. idx, total)
      if n_fail + n_sfail > 0 then redis.call('HINCRBY', k, 'b:f:' .. idx, n_fail + n_sfail) end
      if n_sok + n_sfail > 0 then redis.call('HINCRBY', k, 'b:s:' .. idx, n_sok + n_sfail) end
    end
    calls, fails, slows = 0, 0, 0
    local fields = redis.call('HGETALL', k)
    for i = 1, #fields, 2 do
      local f = fields[i]
      if string.sub(f, 1, 2) == 'b:' then
        local kind, b = string.sub(f, 3, 3), tonumber(string.sub(f, 5))
        if b <= idx - 10 then
          redis.call('HDEL', k, f)
        else
          local v = tonumber(fields[i + 1])
          if kind == 'c' then calls = calls + v elseif kind == 'f' then fails = fails + v
          else slows = slows + v end
        end
      end
    end
    if calls < min_calls then calls = -1 end
  end
  if calls > 0 and (fails >= fr * calls or slows >= sr * calls) then to_open(open_us) end
elseif op == 'admit' then
  if st == 1 and ou >= 0 and now >= ou then
    st = 2
    ep = ep + 1
    redis.call('HSET', k, 'st', 2, 'ep', ep, 'hi', 0, 'hd', 0, 'hf', 0, 'hs', 0)
    h[9], h[10] = 0, 0
  end
  if st == 2 then
    local hi, hd = tonumber(h[9]) or 0, tonumber(h[10]) or 0
    if hi + hd < probes then
      redis.call('HINCRBY', k, 'hi', 1)
      granted = 1
    end
  end
elseif op == 'probe' and st == 2 and tonumber(ARGV[9]) == ep then
  local hi = redis.call('HINCRBY', k, 'hi', -1)
  if tonumber(ARGV[12]) == 1 then
    local hd = redis.call('HINCRBY', k, 'hd', 1)
    local hf = redis.call('HINCRBY', k, 'hf', tonumber(ARGV[10]))
    local hs = redis.call('HINCRBY', k, 'hs', tonumber(ARGV[11]))
    if hd >= probes then
      if hf >= fr * hd or hs >= sr * hd then to_open(open_us) else to_closed() end
    end
  end
end
local remaining = 0
if st == 1 then
  if ou < 0 then remaining = -1 else remaining = math.max(ou - now, 0) end
end
return {st, remaining, ep, opened, granted}
"""
