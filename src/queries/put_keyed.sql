-- One unique job. $1 queue, $2 data, $3 schedule_at, $4 expected_at, $5 key.
INSERT INTO {table} (q_name, data, schedule_at, expected_at, key)
VALUES ($1, $2, $3, $4, $5)
RETURNING id
