-- The registry of workers: a hash of their last reports and a zset of when each was seen.
-- KEYS: the report hash, the seen zset.
-- ARGV: 'seen', id, report (JSON), seen_at; or 'forget', cutoff (seen before it).
if ARGV[1] == 'seen' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
  return 1
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2])
for _, id in ipairs(gone) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #gone
