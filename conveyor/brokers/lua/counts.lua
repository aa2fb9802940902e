-- Jobs per status in one or more queues; a scheduled job whose eta has come counts as queued.
-- KEYS: the tags of the queues. ARGV: now.
-- Returns per queue: scheduled, queued, running, succeeded, failed, cancelled.
local out = {}
for _, q in ipairs(KEYS) do
  local due = redis.call('ZCOUNT', q .. ':sched', '-inf', ARGV[1])
  local queued = 0
  for _, pr in ipairs(redis.call('ZRANGE', q .. ':prios', 0, -1)) do
    queued = queued + redis.call('ZCARD', q .. ':r:' .. pr)
  end
  out[#out + 1] = {
    redis.call('ZCARD', q .. ':sched') - due,
    queued + due,
    redis.call('ZCOUNT', q .. ':run', '-inf', '(+inf'),  -- not RUN_PIN
    redis.call('ZCARD', q .. ':f:succeeded'),
    redis.call('ZCARD', q .. ':f:failed'),
    redis.call('ZCARD', q .. ':f:cancelled'),
  }
end
return out
