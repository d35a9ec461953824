-- Ready jobs of queue $1 at time $2 (the clock, not now(): a blocking get outlives its
-- transaction's start) in claim order: earliest expected_at first, then those without one,
-- ties by id. Two arms so each uses its own partial index: unscheduled jobs come in order
-- straight from queue_ready_idx; scheduled jobs that are due are few and sorted, while the
-- future ones are never visited. Read through a cursor, one candidate at a time.
-- $3: a LIKE pattern on data->>'function' (pq_work takes SQL tasks only), or NULL for all;
-- $4: the function names a client worker has handlers for, or NULL for all.
SELECT c.id
FROM (
    (SELECT id, expected_at, data->>'function' AS function FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NULL
     ORDER BY expected_at NULLS LAST, id)
    UNION ALL
    (SELECT id, expected_at, data->>'function' AS function FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NOT NULL AND schedule_at <= $2
     ORDER BY expected_at NULLS LAST, id)
) AS c
WHERE ($3::text IS NULL OR c.function LIKE $3) AND ($4::text[] IS NULL OR c.function = ANY ($4))
ORDER BY c.expected_at NULLS LAST, c.id
