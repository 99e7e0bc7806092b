-- downgrade: the write hold of id becomes a read hold, with a new lease.
-- KEYS: h w q p n r (see _prelude.lua).  ARGV: channel, lease (ms), id.
-- Reply: 1 if id held the write hold, 2 if so and a writer waits (its cohort then takes no new
-- reader), else 0.
--#include prelude
local id = ARGV[3]
--#include now
--#include sweep
result = 0
if w == id then
  redis.call('DEL', writer)
  w = false
  redis.call('ZADD', holders, now + lease, id)
  freed, readersMayGo = true, true
  result = head and 2 or 1
end
--#include tell
