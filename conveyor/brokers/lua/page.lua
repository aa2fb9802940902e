-- A page of the jobs of one queue, newest (highest id) first.
-- KEYS: the queue's tag. ARGV: before ('' = from the newest), limit, task (JSON, '' = any),
-- status ('' = any).
-- Returns {the jobs (see job()), cursor}. A filter that the index does not answer reads each
-- job it passes, so one call looks at a bounded number of them: when it stops early, the
-- page is complete down to the cursor (the last id looked at) and the caller goes on below.
local q, before, limit, task, status = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local BUDGET = 2000
local found, cursor = {}, nil

local function wanted(id, check)
  if check and redis.call('HGET', jkey(q, id), 's') ~= status then return false end
  if task == '' then return true end
  local p = redis.call('GET', pkey(q, id))
  if not p then return false end  -- no payload: no task to match
  local at = string.find(p, '"task":', 1, true)
  return at ~= nil and string.sub(p, at + 7, at + 6 + #task) == task
end

if status == 'running' then
  local ids = redis.call('ZRANGEBYSCORE', q .. ':run', '-inf', '(+inf')  -- not RUN_PIN
  table.sort(ids, function(x, y) return x > y end)
  for _, id in ipairs(ids) do
    if #found >= limit then break end
    if (before == '' or id < before) and wanted(id, false) then found[#found + 1] = id end
  end
else
  -- Failed and cancelled jobs have an index of their own: the dead letters are few among
  -- many. The others are found in the index of every job, mostly among the newest.
  local index, check = q .. ':ids', status ~= ''
  if status == 'failed' or status == 'cancelled' then index, check = q .. ':l:' .. status, false end
  local max, seen = (before == '') and '+' or '(' .. before, 0
  while #found < limit do
    local ids = redis.call('ZREVRANGEBYLEX', index, max, '-', 'LIMIT', 0, 100)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      seen, max = seen + 1, '(' .. id
      if wanted(id, check) then
        found[#found + 1] = id
        if #found >= limit then break end
      end
    end
    if #found < limit and seen >= BUDGET then
      cursor = string.sub(max, 2)
      break
    end
  end
end

local out = {}
for _, id in ipairs(found) do
  -- An id in an index without a job is left out (Python reports it).
  if redis.call('EXISTS', jkey(q, id)) == 1 then out[#out + 1] = job(q, id) end
end
return {out, cursor}
