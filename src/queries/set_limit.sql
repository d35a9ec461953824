-- Sets the concurrency limit of queue $2 of table $1 to $3 (NULL: none); returns the previous
-- one (NULL: none).
WITH old AS (
    SELECT concurrency_limit FROM {controls} WHERE tbl = $1 AND q_name = $2 FOR UPDATE
)
INSERT INTO {controls} AS c (tbl, q_name, concurrency_limit) VALUES ($1, $2, $3)
ON CONFLICT (tbl, q_name) DO UPDATE SET concurrency_limit = EXCLUDED.concurrency_limit
RETURNING (SELECT concurrency_limit FROM old)
