-- Insert a batch of jobs into one queue.
-- KEYS: the queue's tag, the uniqueness-key hash, [the queue registry: single server only]
-- ARGV: now, queue name, the jobs as MessagePack: per job {id, payload (JSON), priority,
--       eta, key or nil, attempts, token, max_attempts}, numbers as decimal strings
-- Returns per job its status, or the job returned in its place (see job()): the same id
-- enqueued before (a repeated call), or the unfinished job that holds its key.
--
-- A job due now in a queue where nothing else is due goes straight to a worker blocked idle
-- on it (Q:idle, registered by probe.lua): claimed for it here, as claim.lua would, and
-- pushed to its inbox, which its BLPOP returns. That saves the idle worker the round trip
-- of a claim. Its status is then 'running'.
local q, keys, now = KEYS[1], KEYS[2], tonumber(ARGV[1])
if KEYS[3] then redis.call('SADD', KEYS[3], ARGV[2]) end
local ids = q .. ':ids'
local out, woken, look = {}, 0, false

-- The next idle worker of q (its id and lease seconds), or nil; drops expired entries.
local function idle_worker()
  while true do
    local w = redis.call('LPOP', q .. ':idle')
    if not w then return nil end
    local reg = redis.call('HGET', q .. ':iw', w)
    if reg then
      local exp, lease = string.match(reg, '^(%S+) (%S+)$')
      if tonumber(exp) >= now then return w, tonumber(lease) end
      redis.call('HDEL', q .. ':iw', w)
    end
  end
end

-- Not while queued jobs wait (Q:prios): they come first. Handing stops at the first due job
-- not handed, and only such a job queues one, so this holds for the whole batch.
local handing = redis.call('EXISTS', q .. ':idle') == 1
  and redis.call('EXISTS', q .. ':paused', q .. ':prios') == 0
if handing then  -- a due scheduled job comes first: leave it to a claim
  local head = redis.call('ZRANGE', q .. ':sched', 0, 0, 'WITHSCORES')
  handing = not (head[2] and tonumber(head[2]) <= now)
end
local handed, most = {}, 0
for _, new in ipairs(cmsgpack.unpack(ARGV[3])) do
  local id, pr, key = new[1], new[3], new[5]
  local j = jkey(q, id)
  local held = false
  if key then
    held = redis.call('HGET', keys, key)
    -- Lost, or held by a finished job (one failed as damaged by a claim keeps it): take it over.
    local s = held and redis.call('HGET', held, 's')
    if held and (not s or s == 'succeeded' or s == 'failed' or s == 'cancelled') then
      held = false
    end
  end
  -- Writing the immutable fields only if absent also finds a repeated enqueue of this id.
  if not held and not redis.call('SET', pkey(q, id), new[2], 'NX') then held = j end
  if held then
    local hq, hid = string.match(held, '^(.*):j:([^:]*)$')
    out[#out + 1] = job(hq, hid)
  else
    if key then redis.call('HSET', keys, key, j) end
    local w, lease = nil, nil
    if handing and tonumber(new[4]) <= now then
      w, lease = idle_worker()
      handing = w ~= nil
    end
    if w then
      local token, attempts = redis.call('INCR', q .. ':token'), tonumber(new[6]) + 1
      local lease_until = now + lease
      redis.call('HSET', j, 's', 'running', 'e', new[4], 'a', attempts, 't', token, 'w', w,
        'b', ARGV[1], 'l', lease_until, 'pr', pr, 'm', new[8], 'k', key or '')
      run_add(q, {lease_until, id})
      handed[w] = handed[w] or {}
      table.insert(handed[w], {id, new[2], new[4], attempts, token})
      most = math.max(most, lease)
      out[#out + 1] = 'running'
    else
      local status, wakes = push(q, id, pr, new[4], now,
        {'a', new[6], 't', new[7], 'pr', pr, 'm', new[8], 'k', key or ''})
      out[#out + 1] = status
      if status == 'queued' then woken = woken + 1 elseif wakes then look = true end
    end
    redis.call('ZADD', ids, 0, id)
  end
end
for w, jobs in pairs(handed) do
  local inbox = q .. ':in:' .. w
  redis.call('RPUSH', inbox, cmsgpack.pack(jobs))
  -- Past the lease its jobs are recovered anyway: an inbox nobody reads does not stay.
  redis.call('PEXPIRE', inbox, math.ceil(most * 1000) + 1000)
end
wake(q, (woken > 0) and woken or (look and 1 or 0))
return out
