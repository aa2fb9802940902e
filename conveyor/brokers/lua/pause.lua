-- Pause ('1') or resume ('0') one queue; resuming wakes its idle workers.
-- KEYS: the queue's tag, [the queue registry: single server only]. ARGV: '1' or '0', name.
local q = KEYS[1]
if KEYS[2] then redis.call('SADD', KEYS[2], ARGV[2]) end
if ARGV[1] == '1' then
  redis.call('SET', q .. ':paused', '1')
else
  redis.call('DEL', q .. ':paused')
  wake(q, MAX_MARKERS)
end
return 1
