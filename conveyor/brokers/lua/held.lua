-- The jobs that claims whose reply was lost gave a worker, and that it still holds: for
-- release.lua, when the worker's session closes without claiming again. Reads only.
-- KEYS: the tags of the queues those claims ran on. ARGV: the worker, then the receipts.
-- Returns {id, token} per job still running under the worker with a token of its claim.
local worker, out = ARGV[1], {}
for i = 2, #ARGV do
  for _, q in ipairs(KEYS) do
    -- A receipt: the range of tokens its claim gave out, then the ids it took (claim.lua).
    local entries = redis.call('LRANGE', q .. ':rc:' .. ARGV[i], 0, -1)
    local from, to = tonumber(entries[1]), tonumber(entries[2])
    for n = 3, #entries do
      -- s status, t token, w worker (the legend of a job's fields is at the top of lib.lua)
      local f = redis.call('HMGET', jkey(q, entries[n]), 's', 't', 'w')
      local token = tonumber(f[2])
      if f[1] == 'running' and f[3] == worker and token and token > from and token <= to then
        out[#out + 1] = {entries[n], token}
      end
    end
  end
end
return out
