-- Cancel a job of one queue: a pending one at once, a running one by flagging it.
-- KEYS: the queue's tag, the uniqueness-key hash. ARGV: id, now.
-- Returns the job after the change (see job()), or nil when it does not exist.
local q, keys, id = KEYS[1], KEYS[2], ARGV[1]
local f = redis.call('HMGET', jkey(q, id), 's', 'pr', 'k')
if not f[1] then return nil end
if f[1] == 'scheduled' or f[1] == 'queued' then
  -- Without a priority its ready zset is unknown: the claim that meets it there drops it.
  if tonumber(f[2]) or f[1] == 'scheduled' then unpend(q, id, f[1], f[2]) end
  finish(q, id, 'cancelled', ARGV[2], f[3], keys)
elseif f[1] == 'running' then
  redis.call('HSET', jkey(q, id), 'c', '1')
end
return job(q, id)
