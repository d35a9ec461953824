-- Creates or replaces periodic job $1: cron $2, queue $3, data $4, table $5, next run $6, as
-- the current role.
INSERT INTO {periodic} (name, cron, q_name, data, tbl, owner, next_run)
VALUES ($1, $2, $3, $4, $5, current_user::regrole, $6)
ON CONFLICT (name) DO UPDATE
SET cron = EXCLUDED.cron, q_name = EXCLUDED.q_name, data = EXCLUDED.data,
    tbl = EXCLUDED.tbl, owner = EXCLUDED.owner, next_run = EXCLUDED.next_run
RETURNING next_run
