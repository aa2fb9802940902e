-- Read jobs by id in one or more queues.
-- KEYS: the tags of the queues. ARGV: 'job' or 'where', then the ids.
-- Returns per id the job (see job(), 'job') or the 1-based index of its queue in KEYS ('where'),
-- or 0 when no queue has it.
local out = {}
for i = 2, #ARGV do
  local found = 0
  for n, q in ipairs(KEYS) do
    if redis.call('EXISTS', jkey(q, ARGV[i])) == 1 then
      found = (ARGV[1] == 'job') and job(q, ARGV[i]) or n
      break
    end
  end
  out[#out + 1] = found
end
return out
