-- The queue and key of failed task job $1, if it has a key: requeueing it must not make a
-- second pending job with that key (see src/queue/unique.rs).
SELECT ARRAY[q_name, key] FROM {table}
WHERE id = $1 AND dequeued_at IS NOT NULL AND data ? 'failed_at' AND key IS NOT NULL
