-- Grant the write hold to grantee, until the deadline ends (µs).  Tokens come in blocks of 16
-- (_BLOCK in _lock.py): the first is the grantee's, the others are for the local writers its
-- client passes the hold on to, without asking (issue 12).  The block follows the counter, or
-- Redis's TIME in µs if the counter is behind it (missing, or older than the tokens handed out
-- before Redis lost data).  As a grant comes more than 16 µs after the last, the counter is nearly
-- always behind: the SET is one Redis call more per write grant (about 1.5 µs), the price of
-- tokens that survive.
local token = redis.call('INCRBY', counter, 16) - 15
if token < now then
  token = now
  redis.call('SET', counter, now + 15)
end
redis.call('HSET', writer, 'id', grantee, 'deadline', ends, 'token', token)
