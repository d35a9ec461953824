-- Every queue table of this database (those carrying pq's trigger) and its owner, for the
-- maintenance worker's purge.
SELECT t.tgrelid, c.relowner
FROM pg_trigger t
JOIN pg_proc p ON p.oid = t.tgfoid
JOIN pg_class c ON c.oid = t.tgrelid
WHERE t.tgname = 'pq_enqueued_by' AND p.proname = 'pq_stamp_enqueuer'
ORDER BY t.tgrelid
