-- Redrive failed jobs of one queue to queued with their attempts and losses reset; a job whose
-- key an unfinished job now holds stays failed, and so does a damaged one (see flaw()).
-- KEYS: the queue's tag, the uniqueness-key hash. ARGV: now, [the ids as MessagePack].
-- Returns how many moved.
local q, keys, now_s = KEYS[1], KEYS[2], ARGV[1]
local ids = ARGV[2] and cmsgpack.unpack(ARGV[2]) or redis.call('ZRANGE', q .. ':l:failed', 0, -1)
local moved = 0
for _, id in ipairs(ids) do
  local j = jkey(q, id)
  local f = redis.call('HMGET', j, 's', 'k', 'pr')
  local what = flaw({'s', 'k', 'pr'}, f)
  if what and f[1] == 'failed' then report(q, id, what) end
  if f[1] == 'failed' and not what and not (f[2] ~= '' and redis.call('HEXISTS', keys, f[2]) == 1) then
    if f[2] ~= '' then redis.call('HSET', keys, f[2], j) end
    redis.call('ZREM', q .. ':l:failed', id)
    redis.call('ZREM', q .. ':f:failed', id)
    push(q, id, f[3], now_s, tonumber(now_s), {'a', 0, 'n', 0, 'f', ''})
    moved = moved + 1
  end
end
wake(q, moved)
return moved
