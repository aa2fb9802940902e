-- For an idle worker about to block: is work due in these queues, and when is the next eta?
-- KEYS: the tags of the queues (one only on a cluster). ARGV: now, and for a worker of one
-- queue that may be handed jobs: its id, its free slots, its lease, its entries' expiry.
-- Returns {1} when a job is due, else {0, the earliest eta of a scheduled job, if any}.
-- Paused queues count as empty. Markers left in an empty queue's signal list announce work
-- that is gone (a blocked worker would have taken them at once): they are dropped, so that
-- they cannot make the worker spin.
local now = tonumber(ARGV[1])
local next_eta = nil
local worker = ARGV[2]
if worker and redis.call('EXISTS', KEYS[1] .. ':in:' .. worker) == 1 then
  return {1}  -- jobs were handed to it since its last claim: that claim is due first
end
for _, q in ipairs(KEYS) do
  if redis.call('EXISTS', q .. ':paused') == 0 then
    if redis.call('ZCARD', q .. ':prios') > 0 then return {1} end
    local head = redis.call('ZRANGE', q .. ':sched', 0, 0, 'WITHSCORES')
    if head[2] then
      if tonumber(head[2]) <= now then return {1} end
      if next_eta == nil or tonumber(head[2]) < tonumber(next_eta) then next_eta = head[2] end
    end
    redis.call('DEL', q .. ':sig')
  end
end
if worker and redis.call('EXISTS', KEYS[1] .. ':paused') == 0 then
  -- One entry per free slot: enqueue.lua hands out at most that many jobs. Entries of
  -- workers that expired (they stopped or died idle) go first.
  local q = KEYS[1]
  local reg = redis.call('HGETALL', q .. ':iw')
  for i = 1, #reg, 2 do
    if tonumber(string.match(reg[i + 1], '^%S+')) < now then unregister(q, reg[i]) end
  end
  unregister(q, worker)
  local slots = {}
  for i = 1, tonumber(ARGV[3]) do slots[i] = worker end
  if #slots > 0 then
    redis.call('RPUSH', q .. ':idle', unpack(slots))
    redis.call('HSET', q .. ':iw', worker, ARGV[5] .. ' ' .. ARGV[4])
  end
end
return {0, next_eta}
