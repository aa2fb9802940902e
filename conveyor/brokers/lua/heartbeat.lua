-- Extend the leases still held in one queue.
-- KEYS: the queue's tag. ARGV: lease_until, the leases as MessagePack: {id, token} each.
-- Returns {ids whose lease is lost, held ids asked to cancel}.
local q, lease_until = KEYS[1], ARGV[1]
local lost, cancel, renewed = {}, {}, {}
for _, held in ipairs(cmsgpack.unpack(ARGV[2])) do
  local id = held[1]
  local f = redis.call('HMGET', jkey(q, id), 's', 't', 'c')
  if f[1] ~= 'running' or f[2] ~= held[2] then
    lost[#lost + 1] = id
  else
    redis.call('HSET', jkey(q, id), 'l', lease_until)
    renewed[#renewed + 1], renewed[#renewed + 2] = lease_until, id
    if f[3] == '1' then cancel[#cancel + 1] = id end
  end
end
if #renewed > 0 then run_add(q, renewed) end
return {lost, cancel}
