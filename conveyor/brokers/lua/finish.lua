-- Apply the outcomes of attempts in one queue, each only with the current token.
-- KEYS: the queue's tag, the uniqueness-key hash
-- ARGV: the outcomes as MessagePack: per outcome {id, token, status, finished_at, result,
--       error, eta}, numbers as decimal strings, '' for None
-- Returns the refused ids.
return settle(KEYS[1], KEYS[2], cmsgpack.unpack(ARGV[1]))
