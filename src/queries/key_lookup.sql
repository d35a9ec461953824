-- The pending job of queue $1 with key $2, if there is one (run with the latest snapshot).
SELECT id FROM {table}
WHERE q_name = $1 AND key = $2 AND dequeued_at IS NULL
ORDER BY id
LIMIT 1
