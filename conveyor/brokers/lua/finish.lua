-- Apply the outcomes of attempts in one queue, each only with the current token.
-- KEYS: the queue's tag, the uniqueness-key hash
-- ARGV: the outcomes as MessagePack: per outcome {id, token, status, finished_at, result,
--       error, eta}, numbers as decimal strings, '' for None
-- Returns the refused ids. A retry of a job whose hash is damaged (see flaw()) fails it.
local q, keys = KEYS[1], KEYS[2]
local refused, woken, look, done, ended = {}, 0, false, {}, {}
for _, o in ipairs(cmsgpack.unpack(ARGV[1])) do
  local id, status, finished_at = o[1], o[3], o[4]
  local f = redis.call('HMGET', jkey(q, id), 's', 't', 'pr', 'k')
  if f[1] ~= 'running' or f[2] ~= o[2] then
    refused[#refused + 1] = id
  else
    done[#done + 1] = id
    local what = (status == 'scheduled' or status == 'queued') and flaw({'pr'}, {f[3]})
    if what then
      finish(q, id, 'failed', finished_at, f[4], keys, {'w', '', 'x', damage_error(what)}, ended)
    elseif status == 'scheduled' or status == 'queued' then
      local s, wakes = push(q, id, f[3], (o[7] ~= '') and o[7] or finished_at,
        tonumber(finished_at), {'w', '', 'l', '', 'c', '', 'x', o[6]})
      if s == 'queued' then woken = woken + 1 elseif wakes then look = true end
    else
      finish(q, id, status, finished_at, f[4], keys, {'w', '', 'r', o[5], 'x', o[6]}, ended)
    end
  end
end
-- The index entries of the batch, each in one command.
variadic('ZREM', q .. ':run', done)
for status, e in pairs(ended) do variadic('ZADD', q .. ':f:' .. status, e) end
wake(q, (woken > 0) and woken or (look and 1 or 0))
return refused
