WITH next AS MATERIALIZED (
    SELECT id FROM raw_queue
    WHERE q_name = 'big' AND dequeued_at IS NULL
      AND (schedule_at IS NULL OR schedule_at <= now())
    ORDER BY expected_at NULLS LAST, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE raw_queue q SET dequeued_at = now()
FROM next WHERE q.id = next.id
RETURNING q.id, q.data, length(q.data::text), q.enqueued_at, q.schedule_at, q.expected_at;
