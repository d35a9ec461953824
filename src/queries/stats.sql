-- Per-queue counts. A job is in flight when it is claimed by an open transaction, which holds
-- its advisory lock (key: table oid, low 32 bits of id) and is updating its row (its xmax),
-- while the row still looks undequeued. A pending job whose key is held by a session that is
-- not updating its row is squatted: counted apart, and claimable through its row lock. A
-- cancelled job (see src/operations/cancel.rs) is consumed but not done. Payloads are never
-- read: a table with 100 MB jobs counts as fast as one with small ones.
-- ({cancelled_at}: the column, or NULL on a table not yet upgraded to 0.5.0.)
WITH held AS (
    SELECT DISTINCT l.objid
    FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
      AND l.classid = $1
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
), jobs AS (
    SELECT q.q_name, q.dequeued_at, q.enqueued_at, q.schedule_at,
           (h.objid IS NOT NULL AND q.dequeued_at IS NULL) AS held,
           (h.objid IS NOT NULL AND q.dequeued_at IS NULL AND q.xmax = '0'::xid) AS squatted,
           (q.schedule_at IS NULL OR q.schedule_at <= now()) AS due,
           (q.dequeued_at IS NOT NULL AND {cancelled_at} IS NOT NULL) AS cancelled
    FROM {table} q
    LEFT JOIN held h ON h.objid = (q.id & 4294967295)::oid
)
SELECT q_name,
       count(*) FILTER (WHERE dequeued_at IS NULL AND due AND NOT held),
       count(*) FILTER (WHERE dequeued_at IS NULL AND NOT due AND NOT held),
       count(*) FILTER (WHERE held AND NOT squatted),
       count(*) FILTER (WHERE dequeued_at IS NOT NULL AND NOT cancelled),
       now() - min(coalesce(schedule_at, enqueued_at)) FILTER (WHERE dequeued_at IS NULL AND due AND NOT held),
       count(*) FILTER (WHERE squatted),
       count(*) FILTER (WHERE cancelled)
FROM jobs
GROUP BY q_name
ORDER BY q_name
