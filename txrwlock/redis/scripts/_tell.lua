-- Tell who may go now, if anyone, on the channels of their clients only.  The first waiting
-- writer is granted the hold here, handed off (issue 12: a handoff took 4 commands and a message
-- in series, the woken writer's EVALSHA reaching Redis ~470 µs after the release): it is told
-- "<id> <token>", with " !" if others wait (see contend), and needs no further round trip.  Its
-- hold lasts as long as its place did, a deadline its client set with its own lease and still
-- counts on.  If no writer waits, every waiting reader is granted a read hold the same way, and
-- told "<id> 0" (with cohorts, one reader per client that waits).
if freed and not w then
  if head then
    if redis.call('EXISTS', holders) == 0 then
      local grantee, ends = head, redis.call('ZSCORE', places, head)
      redis.call('ZREM', queue, head)
      redis.call('ZREM', places, head)
--#include grant
      local told = head .. ' ' .. string.format('%.0f', token)  -- not %.14g, as .. would
      -- " !": others wait already (see contend).
      if redis.call('EXISTS', queue, readers) > 0 then told = told .. ' !' end
      redis.call('PUBLISH', channel .. ':' .. string.match(head, '^[^:]*'), told)
    end
  elseif readersMayGo then
    local waiting = redis.call('ZRANGE', readers, 0, -1, 'WITHSCORES')
    if #waiting > 0 then
      redis.call('DEL', readers)
      for i = 1, #waiting, 2 do
        local reader = waiting[i]
        redis.call('ZADD', holders, waiting[i + 1], reader)
        redis.call('PUBLISH', channel .. ':' .. string.match(reader, '^[^:]*'), reader .. ' 0')
      end
    end
  end
end
return result
