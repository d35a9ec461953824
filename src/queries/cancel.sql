-- Marks pending job $1 cancelled at $2: consumed (dequeued) with "cancelled_at" and
-- "cancelled_by" in its data (a payload that is not an object is kept under "data"). Waits
-- for a transaction that holds the row claimed; nothing when the job is not pending then.
UPDATE {table}
SET dequeued_at = $2,
    data = CASE WHEN jsonb_typeof(data) = 'object' THEN data
                ELSE jsonb_build_object('data', data) END
           || jsonb_build_object('cancelled_at', $2, 'cancelled_by', current_user)
WHERE id = $1 AND dequeued_at IS NULL
RETURNING q_name
