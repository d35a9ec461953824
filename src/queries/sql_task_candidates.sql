-- The ready SQL tasks of queue $1 at time $2, in claim order, for pq_work: candidates.sql
-- restricted to functions that are signatures (ending in ')'), which matches the predicate of
-- the tables' *_sql_tasks_idx indexes, so jobs for client handlers are never visited. The
-- columns are candidates.sql's; `scheduled` is true so these claims never move a queue's head.
SELECT c.id, NULL::text AS function, c.xmax, c.expected_at, true AS scheduled
FROM (
    (SELECT id, expected_at, xmax FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NULL
       AND (data->>'function') LIKE '%)'
     ORDER BY expected_at NULLS LAST, id)
    UNION ALL
    (SELECT id, expected_at, xmax FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NOT NULL AND schedule_at <= $2
       AND (data->>'function') LIKE '%)'
     ORDER BY expected_at NULLS LAST, id)
) AS c
ORDER BY c.expected_at NULLS LAST, c.id
LIMIT $3
