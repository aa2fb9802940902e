-- For an idle worker about to block: is work due in these queues, and when is the next eta?
-- KEYS: the tags of the queues (one only on a cluster). ARGV: now.
-- Returns {1} when a job is due, else {0, the earliest eta of a scheduled job, if any}.
-- Paused queues count as empty. Markers left in an empty queue's signal list announce work
-- that is gone (a blocked worker would have taken them at once): they are dropped, so that
-- they cannot make the worker spin.
local now = tonumber(ARGV[1])
local next_eta = nil
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
return {0, next_eta}
