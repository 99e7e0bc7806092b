-- Grant the write hold to grantee, until the deadline ends (µs): its token is the counter's next
-- value, or Redis's TIME in µs if the counter is behind it (missing, or older than the tokens
-- handed out before Redis lost data).  As a grant comes more than 1 µs after the last, the counter
-- is nearly always behind: the SET is one Redis call more per write grant (about 1.5 µs), the
-- price of tokens that survive.
local token = redis.call('INCR', counter)
if token < now then
  token = now
  redis.call('SET', counter, now)
end
redis.call('HSET', writer, 'id', grantee, 'deadline', ends, 'token', token)
