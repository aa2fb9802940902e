-- Running jobs of one queue whose lease expired (their worker was lost): back to queued
-- without spending the attempt, counting the loss (n); the loss after max_losses fails the
-- job as a poison pill; a job asked to cancel ends cancelled. A job whose hash is damaged is
-- failed alone (see flaw()); an id without a job leaves Q:run.
-- KEYS: the queue's tag, the uniqueness-key hash. ARGV: now, the most to recover, max_losses.
-- Returns their ids.
local q, keys, now_s, max_losses = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', q .. ':run', '-inf', now_s, 'LIMIT', 0, ARGV[2])
local FIELDS = {'w', 'a', 'c', 'pr', 'k', 'n', 's'}
local woken = 0
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', jkey(q, id), 'w', 'a', 'c', 'pr', 'k', 'n', 's')
  local what = flaw(FIELDS, f)
  if what and gone(q, id) then
    report(q, id, 'no job for this id')
    redis.call('ZREM', q .. ':run', id)
    redis.call('ZREM', q .. ':ids', id)
  elseif what then
    fail_damaged(q, id, now_s, what, f[5], keys)
  else
    local worker, attempts = (f[1] ~= '') and f[1] or 'None', tonumber(f[2])
    local losses = (tonumber(f[6]) or 0) + 1
    local poisoned = losses > max_losses and f[3] ~= '1'
    -- The words of conveyor.brokers.common.poison_pill_error and lease_expired_error.
    local err = poisoned and {
      type = 'conveyor.PoisonPill',
      message = 'its worker was lost ' .. losses .. ' times while running this job (the lease'
        .. ' expired each time): probably a poison pill that kills its worker (out of memory,'
        .. ' a segfault, os._exit); the last worker was ' .. worker,
    } or {
      type = 'conveyor.LeaseExpired',
      message = 'worker ' .. worker .. ' stopped renewing the lease of attempt ' .. f[2]
        .. ' (it crashed, was killed or lost the broker)',
    }
    err.traceback = ''
    local extra = {'w', '', 'x', cjson.encode(err), 'a', math.max(attempts - 1, 0), 'n', losses}
    redis.call('ZREM', q .. ':run', id)
    if f[3] == '1' then
      finish(q, id, 'cancelled', now_s, f[5], keys, extra)
    elseif poisoned then
      finish(q, id, 'failed', now_s, f[5], keys, extra)
    else
      table.insert(extra, 'l')
      table.insert(extra, '')
      push(q, id, f[4], now_s, tonumber(now_s), extra)
      woken = woken + 1
    end
  end
end
wake(q, woken)
return ids
