-- What job $1 is at time $2: consumed, cancelled, failed, scheduled for later, whether a
-- transaction is updating its row (xmax set), the backend holding its advisory key (a claimer
-- holds both; an xmax alone may be a finished transaction or a multixact of row locks), and
-- the backend whose transaction is that xmax: the claimer, also of a job whose key a squatter
-- holds (claimed through its row lock alone).
SELECT q.dequeued_at IS NOT NULL,
       q.{cancelled_at} IS NOT NULL,
       jsonb_typeof(q.data) = 'object' AND q.data ? 'failed_at',
       q.schedule_at IS NOT NULL AND q.schedule_at > $2,
       q.xmax <> '0'::xid,
       holders.key_holder,
       holders.updater
FROM {table} q
CROSS JOIN LATERAL (  -- one read of pg_locks for both
    SELECT min(l.pid) FILTER (
               WHERE l.locktype = 'advisory' AND l.objsubid = 2
                 AND l.classid = q.tableoid AND l.objid = (q.id & 4294967295)::oid
                 AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
           ) AS key_holder,
           min(l.pid) FILTER (
               WHERE l.locktype = 'transactionid' AND l.transactionid = q.xmax
                 AND l.mode = 'ExclusiveLock'
           ) AS updater
    FROM pg_locks l
    WHERE l.granted AND l.locktype IN ('advisory', 'transactionid')
) holders
WHERE q.id = $1
