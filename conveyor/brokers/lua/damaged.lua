-- Fail alone the jobs of one claim whose payload (or last error) Python could not decode: each
-- is found by its token among the ids of the claim's receipt (claim.lua), running under the
-- worker, so a job since recovered or claimed again is left alone.
-- KEYS: the tags of the claim's queues, then the uniqueness-key hash.
-- ARGV: now, worker, receipt, the jobs as MessagePack: {token, error (JSON)} each.
-- Returns the ids failed.
local now_s, worker, keys = ARGV[1], ARGV[2], KEYS[#KEYS]
local errors, failed = {}, {}
for _, d in ipairs(cmsgpack.unpack(ARGV[4])) do errors[tostring(d[1])] = d[2] end
for i = 1, #KEYS - 1 do
  local q = KEYS[i]
  local entries = redis.call('LRANGE', q .. ':rc:' .. ARGV[3], 0, -1)
  for n = 3, #entries do
    local id = entries[n]
    local f = redis.call('HMGET', jkey(q, id), 's', 't', 'w', 'k')
    local err = f[2] and errors[f[2]]
    if err and f[1] == 'running' and f[3] == worker then
      redis.call('ZREM', q .. ':run', id)
      finish(q, id, 'failed', now_s, f[4], keys, {'w', '', 'x', err})
      failed[#failed + 1] = id
    end
  end
end
return failed
