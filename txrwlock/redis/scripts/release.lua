-- release: drop the hold of id (side "a": a read or write hold, or a waiter's place; side "w":
-- the write hold only).  For a release, a cancel, an acquire given up.
-- KEYS: h w q p n r (see _prelude.lua).  ARGV: channel, lease (ms, unused), side, id.
-- Reply: 1 if id held, else 0.
--#include prelude
local side, id = ARGV[3], ARGV[4]
result = side == 'a' and redis.call('ZREM', holders, id) or 0
if result == 0 and redis.call('HGET', writer, 'id') == id then
  redis.call('DEL', writer)
  result, readersMayGo = 1, true
end
freed = result == 1
-- Fast path: nobody waits, so nobody needs telling.
if redis.call('EXISTS', queue, readers) == 0 then return result end
--#include now
--#include sweep
if side == 'a' and result == 0 then
  -- A waiter given up: a reader's place, which keeps nobody out, or a writer's.
  redis.call('ZREM', readers, id)
  if head and redis.call('ZREM', queue, id) == 1 then
    redis.call('ZREM', places, id)
    freed, readersMayGo = true, true
    head = redis.call('ZRANGE', queue, 0, 0)[1]
  end
end
--#include tell
