-- Ready jobs of queue $1: Python pq's len(queue).
SELECT count(*) FROM {table}
WHERE q_name = $1 AND dequeued_at IS NULL AND (schedule_at IS NULL OR schedule_at <= now())
