-- On a cluster, before claiming from several queues: the best candidates of one queue, due
-- scheduled jobs included, so that the claimer can share its limit between the queues.
-- KEYS: the queue's tag. ARGV: now, limit.
-- Returns a flat list of -priority, eta, id in claim order (empty while paused).
local q, now_s, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', q .. ':paused') == 1 then return {} end
local cands = {}
for _, pr in ipairs(redis.call('ZRANGE', q .. ':prios', 0, -1)) do
  local r = redis.call('ZRANGE', q .. ':r:' .. pr, 0, limit - 1, 'WITHSCORES')
  for i = 1, #r, 2 do cands[#cands + 1] = {-tonumber(pr), r[i + 1], r[i]} end
end
local due = redis.call('ZRANGEBYSCORE', q .. ':sched', '-inf', now_s, 'WITHSCORES',
  'LIMIT', 0, limit)
for i = 1, #due, 2 do
  -- A damaged priority ranks first: the claim that takes it fails it (claim.lua).
  local pr = tonumber(redis.call('HGET', jkey(q, due[i]), 'pr')) or math.huge
  cands[#cands + 1] = {-pr, due[i + 1], due[i]}
end
table.sort(cands, function(x, y)
  if x[1] ~= y[1] then return x[1] < y[1] end
  if tonumber(x[2]) ~= tonumber(y[2]) then return tonumber(x[2]) < tonumber(y[2]) end
  return x[3] < y[3]
end)
local out = {}
for i = 1, math.min(limit, #cands) do
  out[#out + 1] = tostring(cands[i][1])
  out[#out + 1] = cands[i][2]
  out[#out + 1] = cands[i][3]
end
return out
