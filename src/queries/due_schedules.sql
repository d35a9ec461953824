-- One periodic job due at $1 whose owner's rights role $2 has, locked for this run: another
-- runner skips it, and once this run commits its next_run is in the future. Its data stays a raw
-- jsonb datum, never decoded.
SELECT name, cron, q_name, data, tbl, owner
FROM {periodic}
WHERE next_run <= $1 AND pg_has_role($2, owner, 'USAGE')
ORDER BY next_run, name
LIMIT 1
FOR UPDATE SKIP LOCKED
