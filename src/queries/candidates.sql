-- Ready jobs of queue $1 at time $2 (the clock, not now(): a blocking get outlives its
-- transaction's start) in claim order: earliest expected_at first, then those without one,
-- ties by id. Two arms so each uses its own partial index: unscheduled jobs come in order
-- straight from queue_ready_idx; scheduled jobs that are due are few and sorted, while the
-- future ones are never visited. Read through a cursor, one candidate at a time.
-- Also returns each job's task function, which the caller filters on in Rust: a filter here
-- would be pushed into both arms and, in a generic plan, turn the index scans into seq scans.
-- And xmax, which tells a job some transaction is claiming (its row is being updated) from
-- one whose advisory lock is merely held (see claim.rs).
SELECT c.id, c.function, c.xmax
FROM (
    (SELECT id, expected_at, data->>'function' AS function, xmax FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NULL
     ORDER BY expected_at NULLS LAST, id)
    UNION ALL
    (SELECT id, expected_at, data->>'function' AS function, xmax FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NOT NULL AND schedule_at <= $2
     ORDER BY expected_at NULLS LAST, id)
) AS c
ORDER BY c.expected_at NULLS LAST, c.id
-- No real bound ($3 is i64::MAX): a LIMIT makes the generic plan fast-start, as a cursor read
-- one row at a time needs; without it the planner sorts every ready job up front.
LIMIT $3
