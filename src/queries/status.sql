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
       (SELECT l.pid FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
          AND l.classid = q.tableoid AND l.objid = (q.id & 4294967295)::oid
          AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
        LIMIT 1),
       (SELECT l.pid FROM pg_locks l
        WHERE l.locktype = 'transactionid' AND l.transactionid = q.xmax
          AND l.mode = 'ExclusiveLock' AND l.granted
        LIMIT 1)
FROM {table} q
WHERE q.id = $1
