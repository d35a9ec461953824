-- Periodic jobs due at $1, locked for this run: another runner skips them, and once this run
-- commits their next_run is in the future.
SELECT name, cron, q_name, data, tbl, owner
FROM {periodic}
WHERE next_run <= $1
ORDER BY next_run, name
FOR UPDATE SKIP LOCKED
