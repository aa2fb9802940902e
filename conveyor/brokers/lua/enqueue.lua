-- Insert a batch of jobs into one queue.
-- KEYS: the queue's tag, the uniqueness-key hash, [the queue registry: single server only]
-- ARGV: now, queue name, the jobs as MessagePack: per job {id, payload (JSON), priority,
--       eta, key or nil, attempts, token, max_attempts}, numbers as decimal strings
-- Returns per job its status, or the job returned in its place (see job()): the same id
-- enqueued before (a repeated call), or the unfinished job that holds its key.
local q, keys, now = KEYS[1], KEYS[2], tonumber(ARGV[1])
if KEYS[3] then redis.call('SADD', KEYS[3], ARGV[2]) end
local ids = q .. ':ids'
local out, woken, look = {}, 0, false
for _, new in ipairs(cmsgpack.unpack(ARGV[3])) do
  local id, pr, key = new[1], new[3], new[5]
  local j = jkey(q, id)
  local held = false
  if key then
    held = redis.call('HGET', keys, key)
    if held and redis.call('EXISTS', held) == 0 then held = false end  -- lost: take it over
  end
  -- Writing the immutable fields only if absent also finds a repeated enqueue of this id.
  if not held and not redis.call('SET', pkey(q, id), new[2], 'NX') then held = j end
  if held then
    local hq, hid = string.match(held, '^(.*):j:([^:]*)$')
    out[#out + 1] = job(hq, hid)
  else
    if key then redis.call('HSET', keys, key, j) end
    local status, wakes = push(q, id, pr, new[4], now,
      {'a', new[6], 't', new[7], 'pr', pr, 'm', new[8], 'k', key or ''})
    redis.call('ZADD', ids, 0, id)
    out[#out + 1] = status
    if status == 'queued' then woken = woken + 1 elseif wakes then look = true end
  end
end
wake(q, (woken > 0) and woken or (look and 1 or 0))
return out
