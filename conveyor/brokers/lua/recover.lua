-- Running jobs of one queue whose lease expired: back to queued, or to failed when their
-- attempts are used up (a crash counts as one), or to cancelled when a cancel was asked.
-- KEYS: the queue's tag, the uniqueness-key hash. ARGV: now, the most to recover.
-- Returns their ids.
local q, keys, now_s = KEYS[1], KEYS[2], ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', q .. ':run', '-inf', now_s, 'LIMIT', 0, ARGV[2])
local woken = 0
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', jkey(q, id), 'w', 'a', 'm', 'c', 'pr', 'k')
  local err = cjson.encode({
    type = 'conveyor.LeaseExpired',
    message = 'worker ' .. ((f[1] ~= '') and f[1] or 'None') .. ' stopped renewing the lease of'
      .. ' attempt ' .. f[2] .. ' (it crashed, was killed or lost the broker)',
    traceback = '',
  })
  local extra = {'w', '', 'x', err}
  redis.call('ZREM', q .. ':run', id)
  if f[4] == '1' then
    finish(q, id, 'cancelled', now_s, f[6], keys, extra)
  elseif tonumber(f[2]) >= tonumber(f[3]) then
    finish(q, id, 'failed', now_s, f[6], keys, extra)
  else
    table.insert(extra, 'l')
    table.insert(extra, '')
    push(q, id, f[5], now_s, tonumber(now_s), extra)
    woken = woken + 1
  end
end
wake(q, woken)
return ids
