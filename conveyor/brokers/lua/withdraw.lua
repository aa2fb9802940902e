-- A worker idle on one queue stops waiting (it stops, or its wait was cancelled): no more
-- jobs are handed to it, and those handed but not read are returned for release.lua.
-- KEYS: the queue's tag. ARGV: the worker.
-- Returns {id, token} per job still running under the worker.
local q, worker = KEYS[1], ARGV[1]
unregister(q, worker)
local out = {}
for _, held in ipairs(unbox(q, worker)) do out[#out + 1] = {held[1][1], held[2][2]} end
return out
