-- Many jobs in one statement, ids returned in the order of the array.
-- $1 queue, $2 jsonb[] payloads, $3 schedule_at, $4 expected_at.
INSERT INTO {table} (q_name, data, schedule_at, expected_at)
SELECT $1, u.d, $3, $4
FROM unnest($2) WITH ORDINALITY AS u(d, n)
ORDER BY u.n
RETURNING id
