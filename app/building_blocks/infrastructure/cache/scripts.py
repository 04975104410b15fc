"""The Lua the building blocks run: each one a single atomic step on the server.

Loaded by SHA (``EVALSHA``) and re-sent when the server has forgotten it (``NOSCRIPT`` after a
restart or ``SCRIPT FLUSH``): redis-py's ``Script`` objects do both.
"""

from __future__ import annotations

# KEYS[1] lock; ARGV[1] the holder's token. Only the holder frees it: an expired holder whose
# lock was taken by another releases nothing.
LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] lock; ARGV[1] token, ARGV[2] new lease (ms from now). Only while still held.
LOCK_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] value, KEYS[2] its generation; ARGV[1] the generation the reader saw before it loaded
# ('' for none), ARGV[2] value, ARGV[3] ttl (ms). A change since the read (INVALIDATE bumped the
# generation) refuses the fill: the loaded value may predate that change.
GUARDED_FILL = """
local seen = redis.call('GET', KEYS[2]) or ''
if seen ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: value, generation, value, generation, ...; ARGV[1] how long a generation outlives (ms).
INVALIDATE = """
for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
  redis.call('DEL', KEYS[i])
end
return #KEYS / 2
"""

# Sliding-window log. KEYS[1] the caller's log (a sorted set of admission times, µs);
# ARGV[1] limit, ARGV[2] window (ms), ARGV[3] a unique member. The server's clock, so every
# process agrees. Returns {allowed (1/0), remaining, µs until the oldest admission leaves}.
SLIDING_WINDOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local reset = window
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then
  reset = tonumber(oldest[2]) + window - now
end
return {allowed, limit - count, reset}
"""
