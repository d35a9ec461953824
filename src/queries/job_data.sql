-- The data of job $1, for recording a client worker's task failure.
SELECT data FROM {table} WHERE id = $1
