-- What job $1 is at time $2: consumed, cancelled, failed, scheduled for later, and its xmax
-- (a running transaction updating it is claiming it).
SELECT dequeued_at IS NOT NULL,
       {cancelled_at} IS NOT NULL,
       jsonb_typeof(data) = 'object' AND data ? 'failed_at',
       schedule_at IS NOT NULL AND schedule_at > $2,
       xmax
FROM {table}
WHERE id = $1
