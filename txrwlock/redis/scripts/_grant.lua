-- Grant the write hold to id: its token is the counter's next value, or Redis's TIME in µs if
-- the counter is behind it (missing, or older than the tokens handed out before Redis lost data).
result = redis.call('INCR', counter)
if result < now then
  result = now
  redis.call('SET', counter, now)
end
redis.call('HSET', writer, 'id', id, 'deadline', now + lease, 'token', result)
