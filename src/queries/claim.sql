-- ({enqueued_by}: the column, or 0 on a table not yet upgraded to 0.3.0.)
-- Marks candidate $1 dequeued if nobody did since our snapshot (re-checked on the latest row
-- version), returning the job; for claims under the job's advisory lock and for squatted jobs
-- (see claim.rs) alike. SKIP LOCKED: a row another transaction locks or is changing (a
-- squatter's claimer, Python pq's claim, a pq_update, a SELECT ... FOR SHARE) is skipped, never
-- waited for. NO KEY UPDATE, as an UPDATE of non-key columns takes: a FOR KEY SHARE (a foreign
-- key check on the job) does not hold it up.
UPDATE {table}
SET dequeued_at = now()
WHERE id = (SELECT id FROM {table} WHERE id = $1 AND dequeued_at IS NULL FOR NO KEY UPDATE SKIP LOCKED)
RETURNING id, data, length(data::text), enqueued_at, schedule_at, expected_at, {enqueued_by}
