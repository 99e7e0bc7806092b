-- renew: give the holds and places of the ids a new lease.
-- KEYS: h w q p n r (see _prelude.lua).  ARGV: channel, lease (ms), ids...
-- Reply: the ids that have neither a hold nor a place (lost); then "!" if a writer waits, or "?" if
-- only readers do: the holder's cohort stops sharing its hold (see contend).
--#include prelude
--#include now
--#include sweep
result = {}
for i = 3, #ARGV do
  if w == ARGV[i] then
    redis.call('HSET', writer, 'deadline', now + lease)
  elseif redis.call('ZSCORE', holders, ARGV[i]) then
    redis.call('ZADD', holders, now + lease, ARGV[i])
  elseif redis.call('ZSCORE', places, ARGV[i]) then
    redis.call('ZADD', places, now + lease, ARGV[i])
  elseif redis.call('ZSCORE', readers, ARGV[i]) then
    redis.call('ZADD', readers, now + lease, ARGV[i])
  else
    table.insert(result, ARGV[i])
  end
end
if redis.call('EXISTS', queue) > 0 then
  table.insert(result, '!')
elseif redis.call('EXISTS', readers) > 0 then
  table.insert(result, '?')
end
--#include tell
