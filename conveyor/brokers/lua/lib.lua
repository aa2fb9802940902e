-- Shared helpers, put in front of every script of the Redis broker (redis_wire.script).
--
-- Every key of a queue starts with the queue's hash tag Q = "{prefix:queue}", so a script
-- that touches one queue touches one Redis Cluster slot. Per queue:
--   Q:j:<id>        hash    one job's state: s status, a attempts, t token, e eta,
--                           w worker, b started_at, l lease_until, f finished_at,
--                           c cancel asked ('1'), r result (JSON), x error (JSON),
--                           n losses (absent: 0; see recover.lua); and for the scripts
--                           pr priority, m max_attempts, k key. An empty string stands for
--                           None. Small values keep the hash compact. A script reads these
--                           with flaw() before its first write about the job: Redis does not
--                           undo the writes of a script that fails half-way.
--   Q:p:<id>        string  the job's immutable fields (JSON, written and read by Python)
--   Q:ids           zset    every job id, score 0: ordered by id, for listing
--   Q:r:<priority>  zset    queued jobs of one priority by eta (then id)
--   Q:prios         zset    the priorities that have queued jobs, highest first
--   Q:sched         zset    scheduled jobs by eta
--   Q:run           zset    running jobs by lease_until, and RUN_PIN (see run_add)
--   Q:f:<status>    zset    finished jobs by finished_at, for retention and counts
--   Q:l:<status>    zset    failed and cancelled jobs by id, for listing the dead letters
--   Q:token         string  the last fencing token handed out
--   Q:sig           list    wake-up markers that idle workers block on (BLPOP)
--   Q:paused        string  present while the queue is paused
--   Q:rc:<receipt>  list    one claim's range of tokens, then the ids it took; kept for a lease
--   Q:idle          list    a worker id per free slot of the workers blocked idle on Q alone
--   Q:iw            hash    such a worker -> "<expiry> <lease seconds>" of its Q:idle entries
--   Q:in:<worker>   list    jobs handed to that idle worker at enqueue (MessagePack batches of
--                           {id, payload, eta, attempts, token}); expires after a lease
-- Job ids sort by creation time, and so do the ids of one priority with the same eta.

local MAX_MARKERS = 32

-- A member longer than a listpack entry may be (zset-max-listpack-value, 64 by default),
-- with score +inf: see run_add.
local RUN_PIN = string.rep('~', 80)

-- The fields every job hash has, and those that hold a number when not empty.
local REQUIRED = {s = true, a = true, t = true, e = true, pr = true, m = true}
local NUMERIC = {a = true, t = true, e = true, pr = true, m = true, b = true, l = true,
  f = true, n = true}

-- The statuses a job may have (its s field).
local KNOWN = {scheduled = true, queued = true, running = true, succeeded = true, failed = true,
  cancelled = true}

-- What is wrong with the fields f of a job hash as HMGET returned them for names, or nil.
-- A hash that is not there at all shows as no s field.
local function flaw(names, f)
  for i, name in ipairs(names) do
    local v = f[i]
    if not v then
      if REQUIRED[name] then return 'no ' .. name .. ' field' end
    elseif NUMERIC[name] and not tonumber(v) and not (v == '' and not REQUIRED[name]) then
      return 'its ' .. name .. ' field is not a number: ' .. string.sub(v, 1, 40)
    end
  end
  return nil
end

-- Whether job id of queue q has no hash at all: asked only of a job flaw() found fault with.
local function gone(q, id)
  return redis.call('EXISTS', q .. ':j:' .. id) == 0
end

-- The error of a job failed because its hash is damaged (what flaw() found), as Python's
-- conveyor.brokers.common.decode_error words it.
local function damage_error(what)
  return cjson.encode({type = 'conveyor.DecodeError',
    message = 'the stored job hash cannot be decoded (' .. what .. ')', traceback = ''})
end

-- A damaged record found by a script that writes: logged in the server's log, the one place
-- a script can report to without failing.
local function report(q, id, what)
  redis.log(redis.LOG_WARNING, 'conveyor: job ' .. q .. ':j:' .. id .. ' is damaged (' .. what
    .. '): left out')
end

local function jkey(q, id) return q .. ':j:' .. id end
local function pkey(q, id) return q .. ':p:' .. id end

-- Run a variadic command on key with args (pairs stay whole), in chunks as unpack() has a
-- limit: one call in place of one per element, which is most of the cost of a small one.
local function variadic(cmd, key, args)
  for i = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
  end
end

-- Add the (lease_until, id) pairs to the running jobs of queue q. Q:run holds RUN_PIN from
-- its first job on, which keeps it a skiplist: as a listpack (fewer than 128 members, the
-- usual number of running jobs) each new lease, later than all others, is inserted after
-- parsing the score of every member before it (docs/redis.md, "Cost per job").
-- Readers skip the pin by asking for scores below +inf. It goes in every ZADD, first: one
-- call in place of an EXISTS, and Redis 6 picks a new set's encoding by its first member.
local function run_add(q, leases)
  local key = q .. ':run'
  for i = 1, #leases, 1000 do
    redis.call('ZADD', key, '+inf', RUN_PIN, unpack(leases, i, math.min(i + 999, #leases)))
  end
end

-- A job as Python reads it: {its state hash, its immutable fields, its id, q} (the last two
-- name a job whose immutable fields are missing or damaged).
local function job(q, id)
  return {redis.call('HGETALL', jkey(q, id)), redis.call('GET', pkey(q, id)), id, q}
end

-- Wake up to n idle workers of queue q (none while it is paused). Markers are capped: a
-- worker that takes a full batch while work is left wakes the next one (claim.lua).
local function wake(q, n)
  if n <= 0 or redis.call('EXISTS', q .. ':paused') == 1 then return end
  local sig = q .. ':sig'
  for _ = 1, math.min(n, MAX_MARKERS) do redis.call('LPUSH', sig, '1') end
  redis.call('LTRIM', sig, 0, MAX_MARKERS - 1)
end

-- Worker w of queue q is no longer idle: drop its entries.
local function unregister(q, w)
  redis.call('LREM', q .. ':idle', 0, w)
  redis.call('HDEL', q .. ':iw', w)
end

-- Empty worker w's inbox in queue q. Returns the entries (see Q:in:<worker>) of the jobs it
-- still holds, running under the token it was handed, each as {entry, fields}: fields are
-- the job's {s, t, w, e, x, a, n} (status, token, worker, eta, error, attempts, losses).
local function unbox(q, w)
  local inbox, held = q .. ':in:' .. w, {}
  for _, batch in ipairs(redis.call('LRANGE', inbox, 0, -1)) do
    for _, h in ipairs(cmsgpack.unpack(batch)) do
      local f = redis.call('HMGET', jkey(q, h[1]), 's', 't', 'w', 'e', 'x', 'a', 'n')
      if f[1] == 'running' and f[3] == w and tonumber(f[2]) == h[5] then
        held[#held + 1] = {h, f}
      end
    end
  end
  redis.call('DEL', inbox)
  return held
end

-- Queue job id (priority pr, a string) at eta (a string, kept exactly as given).
local known = {}  -- per queue, per priority listed in Q:prios by this call: its zset's key
local function ready(q, id, pr, eta)
  local mine = known[q] or {}
  known[q] = mine
  local key = mine[pr]
  if not key then
    key = q .. ':r:' .. pr
    redis.call('ZADD', q .. ':prios', -tonumber(pr), pr)
    mine[pr] = key
  end
  redis.call('ZADD', key, eta, id)
end

-- Priority pr of queue q has no queued job left: unlist it.
local function drained(q, pr)
  redis.call('ZREM', q .. ':prios', pr)
  if known[q] then known[q][pr] = nil end
end

-- Make job id pending at eta: scheduled when eta is after now, else queued. Sets its
-- status, eta and the fields given in extra (pairs). Returns the status, and whether idle
-- workers must look again (it is queued, or it is the earliest scheduled job).
local function push(q, id, pr, eta, now, extra)
  local status = (tonumber(eta) > now) and 'scheduled' or 'queued'
  redis.call('HSET', jkey(q, id), 's', status, 'e', eta, unpack(extra or {}))
  if status == 'queued' then
    ready(q, id, pr, eta)
    return status, true
  end
  redis.call('ZADD', q .. ':sched', eta, id)
  return status, redis.call('ZRANGE', q .. ':sched', 0, 0)[1] == id
end

-- Take a pending job out of its index.
local function unpend(q, id, status, pr)
  if status == 'scheduled' then
    redis.call('ZREM', q .. ':sched', id)
  else
    redis.call('ZREM', q .. ':r:' .. pr, id)
    if redis.call('EXISTS', q .. ':r:' .. pr) == 0 then drained(q, pr) end
  end
end

-- End job id in a finished status at finished_at (a string), setting the fields given in
-- extra (pairs) too; frees its uniqueness key (k) in keys, the hash of the keys held by
-- unfinished jobs (key -> that job's hash key). With ended, its entry in Q:f:<status> is
-- added to ended[status] (score, id pairs) for the caller to add, all at once.
local function finish(q, id, status, finished_at, k, keys, extra, ended)
  local j = jkey(q, id)
  redis.call('HSET', j, 's', status, 'f', finished_at, 'l', '', 'c', '', unpack(extra or {}))
  if ended then
    local e = ended[status] or {}
    ended[status] = e
    e[#e + 1], e[#e + 2] = finished_at, id
  else
    redis.call('ZADD', q .. ':f:' .. status, finished_at, id)
  end
  if status ~= 'succeeded' then redis.call('ZADD', q .. ':l:' .. status, 0, id) end
  if keys and k and k ~= '' and redis.call('HGET', keys, k) == j then redis.call('HDEL', keys, k) end
end

-- Fail job id of queue q alone, its hash being damaged (what flaw() found). Without keys
-- (claim.lua cannot name the uniqueness-key hash) its key stays listed: enqueue.lua takes
-- over a key held by a finished job.
local function fail_damaged(q, id, now_s, what, k, keys)
  redis.call('ZREM', q .. ':run', id)
  finish(q, id, 'failed', now_s, k, keys, {'w', '', 'x', damage_error(what)})
end

-- Delete a finished job and its index entries.
local function delete(q, id, status)
  redis.call('DEL', jkey(q, id), pkey(q, id))
  redis.call('ZREM', q .. ':ids', id)
  redis.call('ZREM', q .. ':f:' .. status, id)
  if status ~= 'succeeded' then redis.call('ZREM', q .. ':l:' .. status, id) end
end

