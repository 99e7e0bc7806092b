-- Grant the write hold to id: its token is the counter's next value, or Redis's TIME in µs if
-- the counter is behind it (missing, or older than the tokens handed out before Redis lost data).
-- As a grant comes more than 1 µs after the last, the counter is nearly always behind: the SET
-- is one Redis call more per write grant (about 1.5 µs), the price of tokens that survive.
result = redis.call('INCR', counter)
if result < now then
  result = now
  redis.call('SET', counter, now)
end
redis.call('HSET', writer, 'id', id, 'deadline', now + lease, 'token', result)
