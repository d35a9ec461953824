-- The data of job $1, for recording a client worker's task failure; with the transaction that
-- last wrote the row (a claim in this transaction writes it) and whether it is claimed and
-- not already failed.
SELECT data, xmin, dequeued_at IS NOT NULL AND NOT (data ? 'failed_at')
FROM {table} WHERE id = $1
