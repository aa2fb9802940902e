-- Delete jobs of one queue in a finished status: the given ids, or up to a number of them.
-- KEYS: the queue's tag. ARGV: status, 'ids' then the ids as MessagePack, or 'some' then
-- how many.
-- Returns how many were deleted.
local q, status = KEYS[1], ARGV[1]
local ids = (ARGV[2] == 'ids') and cmsgpack.unpack(ARGV[3])
  or redis.call('ZRANGE', q .. ':f:' .. status, 0, tonumber(ARGV[3]) - 1)
local n = 0
for _, id in ipairs(ids) do
  if redis.call('HGET', jkey(q, id), 's') == status then
    delete(q, id, status)
    n = n + 1
  end
end
return n
