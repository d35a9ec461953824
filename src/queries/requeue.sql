-- Puts failed task job $1 back in the queue with a fresh retry budget; returns its queue.
UPDATE {table}
SET dequeued_at = NULL, schedule_at = NULL,
    data = (data - 'failed_at') || '{"retried": 0}'
WHERE id = $1 AND dequeued_at IS NOT NULL AND data ? 'failed_at'
RETURNING q_name
