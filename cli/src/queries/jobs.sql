-- Up to 50 jobs of queue $1 in state $2 of the queue table $3.
SELECT id, status, enqueued_at::text, coalesce(schedule_at::text, ''), left(data::text, 300),
       coalesce(error, '')
FROM pq_jobs($1, $2, 50, $3::text::regclass)
