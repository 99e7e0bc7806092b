-- The state of the lock named N in database D lives in six keys "txrwlock:{D:N}:<letter>" (one
-- letter each, so that no two names share a key; the braces keep them in one Redis Cluster
-- slot), the KEYS of every script, in this order:
--   h  readers: ZSET read hold id -> lease deadline (server µs);
--   w  writer: HASH of the write hold: its "id", its lease "deadline" (µs) and its "token";
--   q  queue: ZSET waiting writer id -> arrival number, FIFO;
--   p  places: ZSET waiting writer id -> lease deadline of its place in q (same members as q);
--   n  counter: fencing tokens and arrival numbers.  Never deleted; when missing or behind (Redis
--      lost data), a token starts from Redis's TIME in µs, so that tokens never go back unless
--      Redis's clock does;
--   r  readers wait: set by a reader that must wait, deleted when waiting readers are told to
--      retry (when set needlessly, it costs one needless message).
-- Waiting readers live in their clients only: nothing waits behind them.  No key has a Redis
-- expiry: a volatile-* maxmemory policy, which evicts only such keys, could evict a hold.
-- Invariants: h and w are never both present; q and p have the same members; no id is in two of
-- h, w and q.
-- ARGV of every script: channel, lease (ms, rounded up by the client), then the script's own.
-- Deadlines are in µs (TIME), so that Redis never drops a hold before the lease is over: in ms,
-- TIME truncated to the ms would drop it up to 1 ms early.
--
-- Whenever a hold or a place goes (release, cancel, expiry, downgrade), a script publishes on
-- the channel who may go now, if anyone: the id of the writer at the head of the queue, or "*"
-- for the waiting readers, if r says some wait; only they retry.  Holds and places whose lease
-- ran out are dropped by the general path (_sweep.lua), whoever runs it; waiters run it when the
-- earliest lease ends.  A granted id asking again (its reply was lost, or came too late) is
-- granted again, with a new lease and the same token.
--
-- The uncontended acquire and release take fast paths that neither clean up nor publish: when
-- nobody waits, nobody needs telling, and a hold that ran out is dropped by the first acquire it
-- would keep out, which takes the general path.  Each Redis call costs a script about 1.5 µs,
-- against 3 µs for the run of an empty script, and each Lua closure made 0.6 µs: so the one
-- helper function, wait(), is made after the fast paths.
local holders, writer, queue, places, counter, readers = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5], KEYS[6]
local channel, lease = ARGV[1], tonumber(ARGV[2]) * 1000
-- freed: a hold or a place went; readersMayGo: not only a read hold.
local result, freed, readersMayGo = nil, false, false
