-- Put failed job $1 of the queue table $2 back in its queue.
SELECT pq_requeue($1, $2::text::regclass)
