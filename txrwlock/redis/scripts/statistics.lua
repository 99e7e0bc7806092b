-- statistics: how many read holds, whether a write hold, how many waiting writers.
-- KEYS: h w q p n r (see _prelude.lua).  ARGV: channel, lease (ms, unused).
-- Reply: {readers, 1 if writing else 0, writers waiting}.
--#include prelude
--#include now
--#include sweep
result = {redis.call('ZCARD', holders), w and 1 or 0, redis.call('ZCARD', queue)}
--#include tell
