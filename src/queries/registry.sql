-- The task registry of the pq extension in this database, and its owner.
SELECT c.oid, c.relowner
FROM pg_extension e
JOIN pg_class c ON c.relnamespace = e.extnamespace AND c.relname = 'pq_registered_tasks'
WHERE e.extname = 'pq'
