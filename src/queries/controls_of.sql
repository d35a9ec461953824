-- The controls of every queue of table $1 that has some: paused, concurrency limit.
SELECT q_name, paused_at IS NOT NULL, concurrency_limit
FROM {controls}
WHERE tbl = $1
