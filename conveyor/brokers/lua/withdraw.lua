-- A worker idle on one queue stops waiting (it stops, or its wait was cancelled): no more
-- jobs are handed to it, and those handed but not read are returned for release.lua.
-- KEYS: the queue's tag. ARGV: the worker.
-- Returns {id, token} per job still running under the worker.
local q, worker = KEYS[1], ARGV[1]
unregister(q, worker)
local inbox, out = q .. ':in:' .. worker, {}
for _, batch in ipairs(redis.call('LRANGE', inbox, 0, -1)) do
  for _, h in ipairs(cmsgpack.unpack(batch)) do
    local f = redis.call('HMGET', jkey(q, h[1]), 's', 't', 'w')
    if f[1] == 'running' and f[3] == worker and tonumber(f[2]) == h[5] then
      out[#out + 1] = {h[1], f[2]}
    end
  end
end
redis.call('DEL', inbox)
return out
