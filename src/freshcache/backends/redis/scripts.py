"""The Lua the Redis backends run, and the batch sizes of SCAN + UNLINK (shared with the
cluster backend, which sends the same scripts through its own routing)."""

from __future__ import annotations

# A store after a miss succeeds only if the entry is still what the reader saw (its lease:
# "" for no entry, else "=" and the header of that entry) and every token still exists; it
# also keeps each token alive at least as long as the entries that reference it.
STORE_IF_UNCHANGED = """
local current = redis.call('GET', KEYS[1])
local lease = ARGV[3]
if lease == '' then
  if current then return 0 end
else
  local seen = string.sub(lease, 2)
  if (not current) or string.sub(current, 1, #seen) ~= seen then return 0 end
end
local token_ttl = tonumber(ARGV[4])
for i = 2, #KEYS do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl == -2 then return 0 end
  -- Extend only below half the target: tokens are created with a day to live, so an
  -- extension on every store would be a write per token per miss for nothing.
  if ttl >= 0 and ttl < token_ttl / 2 then redis.call('PEXPIRE', KEYS[i], token_ttl) end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('UNLINK', KEYS[1]) end
return 0
"""

SCAN_COUNT = 1000
UNLINK_BATCH = 500
