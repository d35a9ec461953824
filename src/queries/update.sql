-- Replaces the data of job $2 in queue $1; returns the id when the job exists.
UPDATE {table} SET data = $3 WHERE q_name = $1 AND id = $2 RETURNING id
