-- The relation $1 of the pq extension in this database (its queue table, task registry, queue
-- controls, periodic jobs) and its owner; no row when the extension is not created here, or
-- is of a version without that relation.
SELECT c.oid, c.relowner
FROM pg_extension e
JOIN pg_class c ON c.relnamespace = e.extnamespace AND c.relname = $1
WHERE e.extname = 'pq'
