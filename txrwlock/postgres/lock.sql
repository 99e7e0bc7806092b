-- The statements of txrwlock.postgres, one named operation each, read by _lock.py: a statement
-- runs from its "-- name:" line to the next.  Each runs alone, in autocommit mode, on the
-- session of one lock object (the control session for cancel and statistics).  %s is the lock's
-- key (a bigint: _lock.lockKey) unless said otherwise.  Session-level advisory locks: PostgreSQL
-- queues them in arrival order, and releases them when the session ends.

-- name: setup
-- On each new session of a lock object, first.  %s: the lease in ms, %s: a third of it.
-- A session idle for a lease (a paused or cut-off holder) is ended by the server, which releases
-- its locks; one whose client is gone while it waits is noticed every lease / 3.
SELECT pg_backend_pid(),
       set_config('idle_session_timeout', %s, false),
       set_config('client_connection_check_interval', %s, false)

-- name: readerAcquire
-- 0, and whether it queued, once granted.  %s, %s: the key.  Tried first, so that a grant at
-- once says so (a try, like a wait, comes after those already queued); only if that fails does
-- the subquery wait: CASE evaluates it only then.
SELECT 0, queued FROM (
    SELECT CASE WHEN pg_try_advisory_lock_shared(%s) THEN false
                ELSE (SELECT true FROM (SELECT pg_advisory_lock_shared(%s) OFFSET 0) AS waited)
           END
    OFFSET 0
) AS granted (queued)

-- name: writerAcquire
-- The fencing token: a transaction id, taken after the grant (OFFSET 0 keeps the subquery, so
-- the lock comes first), in the same transaction.  Transaction ids are strictly increasing
-- across the cluster, and 64-bit (epoch included): never reused.  The logical message makes the
-- transaction write WAL, so its commit is flushed before the reply: after a crash, recovery
-- sees the id, and never hands it out again.
-- Whether it queued comes second, as for readerAcquire.  %s, %s: the key.
SELECT pg_current_xact_id()::text::bigint, queued, pg_logical_emit_message(true, 'txrwlock', '')
FROM (
    SELECT CASE WHEN pg_try_advisory_lock(%s) THEN false
                ELSE (SELECT true FROM (SELECT pg_advisory_lock(%s) OFFSET 0) AS waited)
           END
    OFFSET 0
) AS granted (queued)

-- name: tryReaderAcquire
-- 0 if taken, NULL if not.
SELECT CASE WHEN pg_try_advisory_lock_shared(%s) THEN 0 END

-- name: tryWriterAcquire
-- The fencing token if taken (as writerAcquire), NULL if not.
SELECT token, CASE WHEN token IS NOT NULL THEN pg_logical_emit_message(true, 'txrwlock', '') END
FROM (
    SELECT CASE WHEN pg_try_advisory_lock(%s) THEN pg_current_xact_id()::text::bigint END
    OFFSET 0
) AS tried (token)

-- name: readerRelease
-- Whether this session held it (if not, PostgreSQL also warns).
SELECT pg_advisory_unlock_shared(%s)

-- name: writerRelease
SELECT pg_advisory_unlock(%s)

-- name: writerDowngrade
-- Shared first, then the exclusive one given back: a session's own locks never conflict, so the
-- shared one is granted at once, and no other writer can come in between.  Whether the
-- exclusive one was still held.
SELECT pg_advisory_unlock(%s) FROM (SELECT pg_advisory_lock_shared(%s) OFFSET 0) AS shared

-- name: giveBack
-- After an acquire cancelled while it ran: it may have been granted as the cancel came.  The
-- session holds nothing else (see _cohort.SharedHold).
SELECT pg_advisory_unlock_all()

-- name: heartbeat
-- Whether another session waits for the lock: the object's cohort then takes nobody new into its
-- hold (see _cohort.SharedHold), so that its readers, joining it one after another, cannot keep
-- that session out for more than a third of a lease.  %s, %s: the high and low 32 bits of the key.
SELECT EXISTS (
    SELECT FROM pg_locks
    WHERE locktype = 'advisory' AND NOT granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1
)

-- name: cancel
-- On the control session.  %s: the pid of the session whose statement is cancelled.
SELECT pg_cancel_backend(%s)

-- name: statistics
-- On the control session.  %s, %s: the high and low 32 bits of the key, as pg_locks shows them.
-- Sessions holding shared, holding exclusive, waiting shared, waiting exclusive.
SELECT count(*) FILTER (WHERE granted AND mode = 'ShareLock'),
       count(*) FILTER (WHERE granted AND mode = 'ExclusiveLock'),
       count(*) FILTER (WHERE NOT granted AND mode = 'ShareLock'),
       count(*) FILTER (WHERE NOT granted AND mode = 'ExclusiveLock')
FROM pg_locks
WHERE locktype = 'advisory'
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1
