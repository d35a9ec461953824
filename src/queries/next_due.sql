-- When the next scheduled job of queue $1 after time $2 becomes ready, so a blocking get can wake then.
SELECT min(schedule_at) FROM {table}
WHERE q_name = $1 AND dequeued_at IS NULL AND schedule_at IS NOT NULL AND schedule_at > $2
