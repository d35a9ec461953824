-- The ready SQL tasks of queue $1 at time $2, in claim order, for pq_work: candidates.sql
-- restricted to functions that are signatures (ending in ')'), which matches the predicate of
-- the tables' *_sql_tasks_idx indexes, so jobs for client handlers are never visited. The
-- columns are candidates.sql's (pq_work's claims read from the start and never move a head,
-- but a rolled-back one lowers it, so `scheduled` tells which arm a job came from).
SELECT c.id, NULL::text AS function, c.tableoid, c.ctid, c.expected_at, c.scheduled
FROM (
    (SELECT id, expected_at, tableoid, ctid, false AS scheduled FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NULL
       AND (data->>'function') LIKE '%)'
     ORDER BY expected_at NULLS LAST, id)
    UNION ALL
    (SELECT id, expected_at, tableoid, ctid, true FROM {table}
     WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NOT NULL AND schedule_at <= $2
       AND (data->>'function') LIKE '%)'
     ORDER BY expected_at NULLS LAST, id)
) AS c
ORDER BY c.expected_at NULLS LAST, c.id
LIMIT $3
