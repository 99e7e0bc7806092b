-- Every transition of a lock, one atomic script.  The state of the lock named N in database D
-- lives in six keys "txrwlock:{D:N}:<letter>" (one letter each, so that no two names share a
-- key; the braces keep them in one Redis Cluster slot):
--   h  readers: ZSET read hold id -> lease deadline (server ms);
--   w  writer: HASH of the write hold: its "id" and its lease "deadline";
--   q  queue: ZSET waiting writer id -> arrival number, FIFO;
--   p  places: ZSET waiting writer id -> lease deadline of its place in q (same members as q);
--   n  counter: INCR for fencing tokens and arrival numbers.  Never deleted, so that tokens never
--      go backwards while the data persists;
--   r  readers wait: set by a reader that must wait, deleted when waiting readers are told to
--      retry (when set needlessly, it costs one needless message).
-- Waiting readers live in their clients only: nothing waits behind them.  No key has a Redis
-- expiry: a volatile-* maxmemory policy, which evicts only such keys, could evict a hold.
-- Invariants: h and w are never both present; q and p have the same members; no id is in two of
-- h, w and q.
-- ARGV: channel, lease (ms), operation, then hold ids (the fixed arguments first: see
-- RedisReadersWriterLock._command).  An acquire replies with an integer: when granted, positive
-- (the fencing token of a writer, 1 for a reader); else minus one minus the milliseconds until
-- the earliest lease ends, when a holder or a place may vanish (0 if none, and for a try).
-- Whenever a hold or a place goes (release, cancel, expiry, downgrade), the script publishes on
-- the channel who may go now, if anyone: the id of the writer at the head of the queue, or "*"
-- for the waiting readers, if r says some wait; only they retry.  Holds and places whose lease
-- ran out are dropped by the general path, whoever runs it; waiters run it when the earliest
-- lease ends.  A granted id asking again (its reply was lost) is granted again, with a new lease.
-- The one helper function, wait(), is made after the fast paths: a run makes its Lua closures
-- anew, 0.6 µs each.
--
-- The uncontended acquire and release take fast paths that neither clean up nor publish: when
-- nobody waits, nobody needs telling, and a hold that ran out is dropped by the first acquire it
-- would keep out, which takes the general path.  Each Redis call costs the script about 1.5 µs,
-- against 3 µs for the run of an empty script: a writer pair makes 4 + 3 calls, a reader pair
-- 3 + 2.  (Measured: with the writer's lease in h, as the readers', a writer pair made 5 + 3
-- calls and took Redis 3 µs longer; a w that Redis expires would save one call more.)
local holders, writer, queue, places, counter, readers = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5], KEYS[6]
local channel, lease, op, id = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
-- freed: a hold or a place went; readersMayGo: not only a read hold.
local result, freed, readersMayGo = nil, false, false

if op == 'x' or op == 'y' then
  -- Release, cancel or abandon: drop the hold of id here, its place below; 1 if it held.  'y',
  -- the writer's release, looks for a write hold only.
  result = op == 'x' and redis.call('ZREM', holders, id) or 0
  if result == 0 and redis.call('HGET', writer, 'id') == id then
    redis.call('DEL', writer)
    result, readersMayGo = 1, true
  end
  freed = result == 1
  if redis.call('EXISTS', queue, readers) == 0 then return result end
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

if op == 'w' or op == 't' then
  -- Nobody holds (a write hold that ran out keeps its key: the general path drops it) nor waits.
  if redis.call('EXISTS', holders, writer, queue) == 0 then
    redis.call('HSET', writer, 'id', id, 'deadline', now + lease)
    return redis.call('INCR', counter)
  end
elseif op == 'r' and redis.call('EXISTS', writer, queue) == 0 then
  -- No writer holds or waits.
  redis.call('ZADD', holders, now + lease, id)
  return 1
end

-- Holds and places whose lease ran out go first (a w that does not read as a hold too).  w:
-- the writer's id, head: the first waiting writer's, kept up to date below.
if redis.call('ZREMRANGEBYSCORE', holders, '-inf', now) > 0 then
  freed, readersMayGo = true, true
end
local w, due = unpack(redis.call('HMGET', writer, 'id', 'deadline'))
due = tonumber(due) or 0
if not (w and due > now) then
  w = false
  if redis.call('DEL', writer) == 1 then freed, readersMayGo = true, true end
end
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

-- Not granted: minus one minus the milliseconds until the earliest lease ends (0 if none).
local function wait()
  local first = w and due - now or -1
  for _, key in ipairs({holders, places}) do
    local earliest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if earliest[2] then
      local left = tonumber(earliest[2]) - now
      if first < 0 or left < first then first = left end
    end
  end
  return -1 - first
end

if op == 'r' then
  -- Read: granted unless a writer holds or waits (or granted before).
  if not redis.call('ZSCORE', holders, id) and (w or head) then
    redis.call('SET', readers, 1)
    result = wait()
  else
    redis.call('ZADD', holders, now + lease, id)
    result = 1
  end
elseif op == 'w' or op == 't' then
  -- Write ('t': try, never queue): granted when nobody holds and nobody waits ahead.
  if w == id then
    redis.call('HSET', writer, 'deadline', now + lease)
    result = tonumber(redis.call('GET', counter))
  elseif not w and (not head or head == id) and redis.call('EXISTS', holders) == 0 then
    if head then
      redis.call('ZREM', queue, id)
      redis.call('ZREM', places, id)
      head = redis.call('ZRANGE', queue, 0, 0)[1]
    end
    redis.call('HSET', writer, 'id', id, 'deadline', now + lease)
    w = id
    result = redis.call('INCR', counter)
  elseif op == 't' then
    result = 0
  else
    if not redis.call('ZSCORE', queue, id) then
      redis.call('ZADD', queue, redis.call('INCR', counter), id)
      head = head or id
    end
    redis.call('ZADD', places, now + lease, id)
    result = wait()
  end
elseif op == 'x' then
  if result == 0 and head and redis.call('ZREM', queue, id) == 1 then
    redis.call('ZREM', places, id)
    freed, readersMayGo = true, true
    head = redis.call('ZRANGE', queue, 0, 0)[1]
  end
elseif op == 'd' then
  -- Downgrade: the write hold id becomes a read hold; 1 if it held.
  result = 0
  if w == id then
    redis.call('DEL', writer)
    w = false
    redis.call('ZADD', holders, now + lease, id)
    freed, readersMayGo = true, true
    result = 1
  end
elseif op == 'n' then
  -- Renew the holds and places of ARGV[4..]; return the ids that have neither.
  result = {}
  for i = 4, #ARGV do
    if w == ARGV[i] then
      redis.call('HSET', writer, 'deadline', now + lease)
    elseif redis.call('ZSCORE', holders, ARGV[i]) then
      redis.call('ZADD', holders, now + lease, ARGV[i])
    elseif redis.call('ZSCORE', places, ARGV[i]) then
      redis.call('ZADD', places, now + lease, ARGV[i])
    else
      table.insert(result, ARGV[i])
    end
  end
elseif op == 's' then
  result = {redis.call('ZCARD', holders), w and 1 or 0, redis.call('ZCARD', queue)}
end

-- Tell who may go now, if anyone.
if freed and not w then
  if head then
    if redis.call('EXISTS', holders) == 0 then redis.call('PUBLISH', channel, head) end
  elseif readersMayGo and redis.call('DEL', readers) == 1 then
    redis.call('PUBLISH', channel, '*')
  end
end
return result
