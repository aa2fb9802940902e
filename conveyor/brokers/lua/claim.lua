-- Claim up to limit due jobs from one or more queues: make the due scheduled jobs queued,
-- then take queued ones by priority, then eta, then id, across the queues.
-- KEYS: the tags of the queues (one only on a cluster)
-- ARGV: now, lease_until, worker, limit, receipt, '1' if the worker may have offered slots
--       or been handed jobs (see probe.lua), older receipts whose reply was lost
-- Returns {the jobs, 1 if jobs handed to the worker are left in its inbox}, per job
-- {payload, eta, error, attempts, token, losses}: only what a producer gave and what a retry left
-- is read, the rest of a claimed job is known (see RedisConsumer._claimed in redis_consumer.py).
-- A job whose hash is damaged (see flaw()) is failed alone, never claimed; one whose payload
-- is missing (nil) or does not decode is failed by the claimer (damaged.lua, which finds it
-- by its token in this claim's receipt: an id in each row would cost the claim ~5 %).
local now_s, lease_until, worker, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out, taken, low = {}, {}, {}
local pkeys, running = {}, {}  -- per job of out, its payload's key; per queue, Q:run entries

-- Job id of queue q goes out under token; its payload is read with the others at the end.
local function emit(q, id, eta, error, attempts, token, losses)
  out[#out + 1] = {false, eta, error or '', attempts, token, tonumber(losses) or 0}
  pkeys[#out] = pkey(q, id)
end

-- Hand over job id of queue q, fields f = {status, token, worker, eta, error, attempts,
-- losses}, if
-- this worker still holds it under token (ARGV tokens are strings, stored ones too).
local function again(q, id, token, f)
  if f[1] == 'running' and f[3] == worker and tonumber(f[2]) == token and #out < limit
    and tonumber(f[4]) and tonumber(f[6]) then  -- else damaged since: recover.lua fails it
    emit(q, id, f[4], f[5], tonumber(f[6]), token, f[7])
    taken[q] = taken[q] or {}
    table.insert(taken[q], id)
    low[q] = math.min(low[q] or token, token - 1)
    return true
  end
  return false
end

-- Claim job id of queue q, whose fields f = {s, e, x, a, n} were checked by flaw().
local function take(q, id, token, f)
  local attempts = tonumber(f[4]) + 1
  redis.call('HSET', jkey(q, id), 's', 'running', 'a', attempts, 't', token, 'w', worker,
    'b', now_s, 'l', lease_until)
  emit(q, id, f[2], f[3], attempts, token, f[5])
  local r = running[q] or {}
  running[q] = r
  r[#r + 1], r[#r + 2] = lease_until, id
end

-- A receipt lists the ids one claim took in a queue, after the range of tokens it gave out.
-- A claim whose reply was lost (the connection broke) hands its jobs over again, as long as
-- they still run under a token of that claim.
for i = 7, #ARGV do
  for _, q in ipairs(KEYS) do
    local rc = q .. ':rc:' .. ARGV[i]
    local entries = redis.call('LRANGE', rc, 0, -1)
    local from, to = tonumber(entries[1]), tonumber(entries[2])
    for n = 3, #entries do
      local f = redis.call('HMGET', jkey(q, entries[n]), 's', 't', 'w', 'e', 'x', 'a', 'n')
      local token = tonumber(f[2])
      if token and token > from and token <= to then again(q, entries[n], token, f) end
    end
    redis.call('DEL', rc)
  end
end

-- This worker is busy again: no more jobs handed to it, and those handed while it did not
-- read its inbox are claimed now. Those beyond the limit (half of a split claim) stay in the
-- inbox for its next claim.
local leftover = 0
for _, q in ipairs(ARGV[6] == '1' and KEYS or {}) do
  unregister(q, worker)
  local left = {}
  for _, held in ipairs(unbox(q, worker)) do
    if not again(q, held[1][1], held[1][5], held[2]) then left[#left + 1] = held[1] end
  end
  if #left > 0 then
    leftover = 1
    local inbox = q .. ':in:' .. worker
    redis.call('RPUSH', inbox, cmsgpack.pack(left))
    redis.call('PEXPIRE', inbox, math.ceil((tonumber(lease_until) - tonumber(now_s)) * 1000) + 1000)
  end
end

-- Per queue, make its due scheduled jobs queued, then list its best candidates in claim
-- order (priorities, then each one's zset order): {-priority, eta, id, queue, priority}.
local live, heads, want = {}, {}, limit - #out
for _, q in ipairs(KEYS) do
  if want > 0 and redis.call('EXISTS', q .. ':paused') == 0 then
    live[#live + 1] = q
    local due = redis.call('ZRANGEBYSCORE', q .. ':sched', '-inf', now_s, 'WITHSCORES',
      'LIMIT', 0, math.max(limit, 1000))
    for i = 1, #due, 2 do
      local id = due[i]
      local f = redis.call('HMGET', jkey(q, id), 's', 'pr')
      local what = flaw({'s', 'pr'}, f)
      redis.call('ZREM', q .. ':sched', id)
      if what and gone(q, id) then
        report(q, id, 'no job for this id')
        redis.call('ZREM', q .. ':ids', id)
      elseif what then
        fail_damaged(q, id, now_s, what)
      else
        ready(q, id, f[2], due[i + 1])
        redis.call('HSET', jkey(q, id), 's', 'queued')
      end
    end
    local got = 0
    for _, pr in ipairs(redis.call('ZRANGE', q .. ':prios', 0, -1)) do
      if got >= want then break end
      local key = q .. ':r:' .. pr
      if #KEYS == 1 then  -- no merge across queues: the etas are not needed (nor cheap)
        local r = redis.call('ZRANGE', key, 0, want - got - 1)
        for i = 1, #r do heads[#heads + 1] = {-tonumber(pr), 0, r[i], q, pr} end
        got = got + #r
        if #r == 0 then drained(q, pr) end
      else
        local r = redis.call('ZRANGE', key, 0, want - got - 1, 'WITHSCORES')
        for i = 1, #r, 2 do heads[#heads + 1] = {-tonumber(pr), tonumber(r[i + 1]), r[i], q, pr} end
        got = got + #r / 2
        if #r == 0 then drained(q, pr) end
      end
    end
  end
end
if #live > 1 then
  table.sort(heads, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    if x[2] ~= y[2] then return x[2] < y[2] end
    return x[3] < y[3]
  end)
end

-- What a queue gives is a prefix of each of its priorities' order: remove those.
local n, per, many = math.min(want, #heads), {}, {}
for i = 1, n do
  local q, pr = heads[i][4], heads[i][5]
  per[q] = per[q] or {}
  per[q][pr] = (per[q][pr] or 0) + 1
  many[q] = (many[q] or 0) + 1
end
for q, prs in pairs(per) do
  for pr, c in pairs(prs) do
    redis.call('ZREMRANGEBYRANK', q .. ':r:' .. pr, 0, c - 1)
    if redis.call('EXISTS', q .. ':r:' .. pr) == 0 then drained(q, pr) end
  end
end
-- Tokens come from one counter per queue: each is greater than any handed out before it (a
-- candidate not claimed leaves its token unused).
local tokens, high = {}, {}
for q, c in pairs(many) do
  high[q] = redis.call('INCRBY', q .. ':token', c)
  tokens[q] = high[q] - c
end
local first = {}
for q, t in pairs(tokens) do first[q] = t end
-- Each candidate is read before any write about it: a damaged one (see flaw()) is failed
-- alone, an id without a job or a job no longer queued (a stray entry) is dropped, the
-- others are claimed. The one HMGET per job that the claim needs anyway, of the fields it
-- reads: t, pr and m are checked by the scripts that read them (t is rewritten here, m read
-- by none), as checking them here costs the claim ~5 % more.
local FIELDS = {'s', 'e', 'x', 'a', 'n'}
for i = 1, n do
  local q, id = heads[i][4], heads[i][3]
  local f = redis.call('HMGET', jkey(q, id), 's', 'e', 'x', 'a', 'n')
  -- flaw(), spelled out for the usual job
  local n_ok = not f[5] or f[5] == '' or tonumber(f[5])
  if f[1] == 'queued' and tonumber(f[4]) and n_ok and f[2] then  -- Python checks e's number
    tokens[q] = tokens[q] + 1
    take(q, id, tokens[q], f)
    taken[q] = taken[q] or {}
    table.insert(taken[q], id)
  elseif f[1] ~= 'queued' and KNOWN[f[1]] then  -- a stray entry: its job is elsewhere
    report(q, id, 'it is ' .. f[1] .. ', not queued')
  elseif gone(q, id) then
    report(q, id, 'no job for this id')  -- not listed either: its entries go
    redis.call('ZREM', q .. ':ids', id)
  else
    fail_damaged(q, id, now_s,
      flaw(FIELDS, f) or ('its s field is not a status: ' .. string.sub(f[1], 1, 40)))
  end
end
-- The receipt: the range of tokens this claim gave out in the queue, then the ids it took.
for q, ids in pairs(taken) do
  local top = high[q] or redis.call('INCRBY', q .. ':token', 0)
  local from = first[q] or top
  local rc = q .. ':rc:' .. ARGV[5]
  table.insert(ids, 1, top)
  table.insert(ids, 1, math.min(from, low[q] or from))
  variadic('RPUSH', rc, ids)
  redis.call('PEXPIRE', rc, math.ceil((tonumber(lease_until) - tonumber(now_s)) * 1000) + 1000)
end
for q, r in pairs(running) do run_add(q, r) end
for i = 1, #pkeys, 1000 do
  local payloads = redis.call('MGET', unpack(pkeys, i, math.min(i + 999, #pkeys)))
  for n, payload in ipairs(payloads) do out[i + n - 1][1] = payload end
end
-- This worker is full and work is left: wake the next idle one.
if #out >= limit then
  for _, q in ipairs(live) do
    if redis.call('ZCARD', q .. ':prios') > 0 and redis.call('LLEN', q .. ':sig') == 0 then
      redis.call('LPUSH', q .. ':sig', '1')
    end
  end
end
return {out, leftover}
