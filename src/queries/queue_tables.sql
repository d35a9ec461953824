-- Every queue table of this database and its owner, for the maintenance worker's purge: plain
-- or partitioned tables carrying the pq_enqueued_by trigger of pq's own pq_stamp_enqueuer()
-- (a member of the extension, so no function of the same name elsewhere qualifies). Every name
-- is qualified and every operator pg_catalog's: this runs as a superuser, under whatever
-- settings the database's owner gave the database.
SELECT t.tgrelid, c.relowner
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
WHERE t.tgname OPERATOR(pg_catalog.=) 'pq_enqueued_by'::pg_catalog.name
  AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog."char"[])
  AND EXISTS (SELECT FROM pg_catalog.pg_depend d
              JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
              WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                AND d.objid OPERATOR(pg_catalog.=) t.tgfoid
                AND d.deptype OPERATOR(pg_catalog.=) 'e'::pg_catalog."char"
                AND e.extname OPERATOR(pg_catalog.=) 'pq'::pg_catalog.name)
ORDER BY t.tgrelid
