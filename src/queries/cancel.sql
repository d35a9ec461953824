-- Marks pending job $1 cancelled at $2: consumed (dequeued), with cancelled_at set; its data is
-- left as it is. Waits for a transaction that holds the row claimed; nothing when the job is
-- not pending then.
UPDATE {table}
SET dequeued_at = $2, cancelled_at = $2
WHERE id = $1 AND dequeued_at IS NULL
RETURNING q_name
