-- Delete up to a number of finished jobs of one queue older than their retention.
-- KEYS: the queue's tag. ARGV: limit, then pairs of status, cutoff (finished before it).
-- Returns how many were deleted.
local q, left = KEYS[1], tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  if left <= 0 then break end
  local status = ARGV[i]
  local ids = redis.call('ZRANGEBYSCORE', q .. ':f:' .. status, '-inf', '(' .. ARGV[i + 1],
    'LIMIT', 0, left)
  for _, id in ipairs(ids) do delete(q, id, status) end
  left = left - #ids
end
return tonumber(ARGV[1]) - left
