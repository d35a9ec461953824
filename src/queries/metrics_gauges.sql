-- Per-queue gauges from the pending jobs only (read through the ready and scheduled indexes,
-- never the done jobs): ready, scheduled, in flight (claimed by a running transaction, which
-- holds its advisory key and is updating its row), and the age in seconds of the oldest ready
-- job. $1: the table's oid (the claims' advisory key space).
WITH held AS (
    SELECT DISTINCT l.objid
    FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
      AND l.classid = $1
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
), pending AS (
    SELECT q_name, id, enqueued_at, NULL::timestamptz AS schedule_at, xmax
    FROM {table} WHERE dequeued_at IS NULL AND schedule_at IS NULL
    UNION ALL
    SELECT q_name, id, enqueued_at, schedule_at, xmax
    FROM {table} WHERE dequeued_at IS NULL AND schedule_at IS NOT NULL
), jobs AS (
    SELECT p.q_name, coalesce(p.schedule_at, p.enqueued_at) AS ready_since,
           (p.schedule_at IS NULL OR p.schedule_at <= now()) AS due,
           (h.objid IS NOT NULL AND p.xmax <> '0'::xid) AS in_flight
    FROM pending p
    LEFT JOIN held h ON h.objid = (p.id & 4294967295)::oid
)
SELECT q_name,
       count(*) FILTER (WHERE due AND NOT in_flight),
       count(*) FILTER (WHERE NOT due AND NOT in_flight),
       count(*) FILTER (WHERE in_flight),
       coalesce(extract(epoch FROM now() - min(ready_since) FILTER (WHERE due AND NOT in_flight)), 0)::float8
FROM jobs
GROUP BY q_name
ORDER BY q_name
