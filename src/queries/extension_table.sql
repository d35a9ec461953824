-- The extension's own queue table, if the extension is installed in this database.
SELECT c.oid
FROM pg_extension e
JOIN pg_class c ON c.relnamespace = e.extnamespace AND c.relname = 'queue'
WHERE e.extname = 'pq'
