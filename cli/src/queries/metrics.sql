-- Every sample of pq_metrics for the queue table $1.
SELECT metric, queue, label, value FROM pq_metrics($1::text::regclass)
