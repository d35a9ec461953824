-- ({enqueued_by}: the column, or 0 on a table not yet upgraded to 0.3.0.)
-- Marks candidate $1 dequeued if nobody did since our snapshot (re-checked on the latest row
-- version), returning the job. Runs only while we hold the job's advisory lock.
UPDATE {table}
SET dequeued_at = now()
WHERE id = $1 AND dequeued_at IS NULL
RETURNING id, data, length(data::text), enqueued_at, schedule_at, expected_at, {enqueued_by}
