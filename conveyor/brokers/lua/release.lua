-- Hand running jobs of one queue back, due at eta (queued, or scheduled when later than now),
-- without counting the attempt; a job asked to cancel becomes cancelled instead.
-- KEYS: the queue's tag, the uniqueness-key hash. ARGV: now, eta, the leases as MessagePack:
-- {id, token} each (a stale token is ignored). A damaged job (see flaw()) is failed alone.
local q, keys, now_s, eta_s = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local woken = 0
for _, held in ipairs(cmsgpack.unpack(ARGV[3])) do
  local id = held[1]
  local f = redis.call('HMGET', jkey(q, id), 's', 't', 'a', 'pr', 'c', 'k')
  local what = flaw({'s', 't', 'a', 'pr'}, f)
  if f[1] == 'running' and f[2] == held[2] and what then
    fail_damaged(q, id, now_s, what, f[6], keys)
  elseif f[1] == 'running' and f[2] == held[2] then
    redis.call('ZREM', q .. ':run', id)
    local extra = {'a', math.max(tonumber(f[3]) - 1, 0), 'w', ''}
    if f[5] == '1' then
      finish(q, id, 'cancelled', now_s, f[6], keys, extra)
    else
      table.insert(extra, 'l')
      table.insert(extra, '')
      -- A scheduled job wakes the waiters only when it is the next due: they wait until then.
      local _, wake_now = push(q, id, f[4], eta_s, tonumber(now_s), extra)
      if wake_now then woken = woken + 1 end
    end
  end
end
wake(q, woken)
return woken
