-- Claims candidate $1 whose advisory lock another session holds without having claimed it
-- (no transaction is updating its row): the row lock decides instead. SKIP LOCKED leaves it to
-- a real claimer that got to the row first; one that comes after re-checks dequeued_at and
-- moves on, as with any claim.
UPDATE {table}
SET dequeued_at = now()
WHERE id = (SELECT id FROM {table} WHERE id = $1 AND dequeued_at IS NULL FOR UPDATE SKIP LOCKED)
RETURNING id, data, length(data::text), enqueued_at, schedule_at, expected_at, {enqueued_by}
