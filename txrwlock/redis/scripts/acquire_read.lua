-- acquire_read: take a read hold for id, granted unless a writer holds or waits (or granted
-- before: then with a new lease).
-- KEYS: h w q p n r (see _prelude.lua).  ARGV: channel, lease (ms), mode ("q" waits, "t" is a
-- try), id.
-- Reply: 1 when granted; else, for a try, 0; else minus one minus the ms until the earliest lease
-- ends (0 if none), and the reader waits, with a place in r, to be told "<id> 0".
--#include prelude
local try, id = ARGV[3] == 't', ARGV[4]
--#include now
if redis.call('EXISTS', writer, queue) == 0 then
  -- No writer holds or waits.
  redis.call('ZADD', holders, now + lease, id)
  return 1
end
--#include sweep
if not redis.call('ZSCORE', holders, id) and (w or head) then
  if try then
    result = 0
  else
    if redis.call('ZADD', readers, now + lease, id) == 1 and w then contend(w, '?') end
    result = wait()
  end
else
  redis.call('ZREM', readers, id)
  redis.call('ZADD', holders, now + lease, id)
  result = 1
end
--#include tell
