-- Creates or replaces periodic job $1 of role $7: cron $2, queue $3, data $4, table $5, next
-- run $6. A name another role's schedule has is not replaced (no row).
INSERT INTO {periodic} AS p (name, cron, q_name, data, tbl, owner, next_run)
VALUES ($1, $2, $3, $4, $5, $7::regrole, $6)
ON CONFLICT (name) DO UPDATE
SET cron = EXCLUDED.cron, q_name = EXCLUDED.q_name, data = EXCLUDED.data,
    tbl = EXCLUDED.tbl, next_run = EXCLUDED.next_run
WHERE p.owner = EXCLUDED.owner
RETURNING next_run
