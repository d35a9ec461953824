-- Sets the concurrency limit of queue $2 of table $1 to $3 (NULL: none); returns the previous
-- one (NULL: none), as the statement's snapshot saw it.
INSERT INTO {controls} AS c (tbl, q_name, concurrency_limit) VALUES ($1, $2, $3)
ON CONFLICT (tbl, q_name) DO UPDATE SET concurrency_limit = EXCLUDED.concurrency_limit
RETURNING (SELECT o.concurrency_limit FROM {controls} o WHERE o.tbl = $1 AND o.q_name = $2)
