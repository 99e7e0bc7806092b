-- Holds and places whose lease ran out go first (a w that does not read as a hold too).  w:
-- the writer's id (false if none), due its deadline, wToken its token; head: the first waiting
-- writer's id, kept up to date by the script.
if redis.call('ZREMRANGEBYSCORE', holders, '-inf', now) > 0 then
  freed, readersMayGo = true, true
end
local w, due, wToken = unpack(redis.call('HMGET', writer, 'id', 'deadline', 'token'))
due = tonumber(due) or 0
if not (w and due > now) then
  w = false
  if redis.call('DEL', writer) == 1 then freed, readersMayGo = true, true end
end
redis.call('ZREMRANGEBYSCORE', readers, '-inf', now)  -- a waiting reader keeps nobody out
local head = redis.call('ZRANGE', queue, 0, 0)[1]
if head then
  local gone = redis.call('ZRANGEBYSCORE', places, '-inf', now)
  if #gone > 0 then
    redis.call('ZREM', queue, unpack(gone))
    redis.call('ZREM', places, unpack(gone))
    freed, readersMayGo = true, true
    head = redis.call('ZRANGE', queue, 0, 0)[1]
  end
end

-- Tell the client of the hold id that another client waits for it: "! <id>" a writer, "? <id>"
-- only readers (which wait for write holds only).  Its cohort then takes no new reader into that
-- hold, and does not pass it on (issue 12).
local function contend(id, kind)
  redis.call('PUBLISH', channel .. ':' .. string.match(id, '^[^:]*'), kind .. ' ' .. id)
end

-- Not granted: minus one minus the milliseconds (rounded up) until the earliest lease ends, when
-- a holder or a place may vanish (0 if none).
local function wait()
  local first = w and due - now or -1
  for _, key in ipairs({holders, places}) do
    local earliest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if earliest[2] then
      local left = tonumber(earliest[2]) - now
      if first < 0 or left < first then first = left end
    end
  end
  if first < 0 then return 0 end
  return -1 - math.ceil(first / 1000)
end
