-- Records a performed task's outcome on job $1: merges $2 into its data (retried, errors,
-- failed_at); when $3 (retry) puts it back in the queue, due at $4.
UPDATE {table}
SET data = data || $2,
    dequeued_at = CASE WHEN $3 THEN NULL ELSE dequeued_at END,
    schedule_at = CASE WHEN $3 THEN $4 ELSE schedule_at END
WHERE id = $1
RETURNING q_name
