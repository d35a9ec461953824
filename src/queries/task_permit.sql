-- May a task calling function $1, enqueued by role $2, in queue table $3, run? It must be
-- registered; the role must still exist and be allowed to EXECUTE the function and use its
-- schema; and the table must vouch for enqueued_by: a superuser's table only with its
-- pq_enqueued_by trigger enabled (the trigger is what stamps the column), anyone else's table
-- only for roles its owner has the privileges of (its owner can write the column at will).
-- Returns (registered, the role's name or NULL, allowed, vouched).
SELECT EXISTS (SELECT FROM {registry} r WHERE r.function OPERATOR(pg_catalog.=) $1::regprocedure),
       a.rolname::text,
       CASE WHEN a.oid IS NOT NULL
            THEN has_function_privilege($2, $1, 'EXECUTE')
                 AND has_schema_privilege($2, p.pronamespace, 'USAGE')
            ELSE false END,
       (SELECT CASE WHEN o.rolsuper
                    THEN EXISTS (SELECT FROM pg_trigger t
                                 WHERE t.tgrelid = c.oid AND t.tgname = 'pq_enqueued_by'
                                   AND t.tgenabled IN ('O', 'A'))
                    ELSE a.oid IS NOT NULL AND pg_has_role(c.relowner, $2, 'USAGE') END
        FROM pg_class c JOIN pg_roles o ON o.oid = c.relowner
        WHERE c.oid = $3)
FROM pg_proc p
LEFT JOIN pg_roles a ON a.oid = $2
WHERE p.oid = $1
