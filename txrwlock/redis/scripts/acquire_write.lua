-- acquire_write: take the write hold for id, granted when nobody holds and nobody waits ahead;
-- else queue id (mode "q") or not (mode "t", a try).  A writer granted before is granted again,
-- with a new lease and the same token.
-- KEYS: h w q p n r (see _prelude.lua).  ARGV: channel, lease (ms), mode, id.
-- Reply: the fencing token (positive) when granted; else, for a try, 0; else minus one minus the
-- ms until the earliest lease ends (0 if none), and the writer waits to be told its id.
--#include prelude
local try, id = ARGV[3] == 't', ARGV[4]
--#include now
if redis.call('EXISTS', holders, writer, queue) == 0 then
  -- Nobody holds (a write hold that ran out keeps its key: the general path drops it) nor waits.
  local grantee, ends = id, now + lease
--#include grant
  return token
end
--#include sweep
if w == id then
  redis.call('HSET', writer, 'deadline', now + lease)
  result = tonumber(wToken)
elseif not w and (not head or head == id) and redis.call('EXISTS', holders) == 0 then
  if head then
    redis.call('ZREM', queue, id)
    redis.call('ZREM', places, id)
    head = redis.call('ZRANGE', queue, 0, 0)[1]
  end
  local grantee, ends = id, now + lease
--#include grant
  result, w = token, id
  if redis.call('EXISTS', queue, readers) > 0 then contend(id, '!') end
elseif try then
  result = 0
else
  if not redis.call('ZSCORE', queue, id) then
    redis.call('ZADD', queue, redis.call('INCR', counter), id)
    head = head or id
    -- The holders learn that a writer waits from the first: later ones find them told, or
    -- granted while others waited (told so with the grant).
    if head == id then
      if w then
        contend(w, '!')
      else
        for _, holder in ipairs(redis.call('ZRANGE', holders, 0, -1)) do contend(holder, '!') end
      end
    end
  end
  redis.call('ZADD', places, now + lease, id)
  result = wait()
end
--#include tell
