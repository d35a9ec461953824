-- May a task calling function $1, enqueued by role $2, run? It must be registered, and the
-- role must still exist and be allowed to EXECUTE the function and use its schema. Returns
-- (registered, the role's name or NULL, allowed).
SELECT EXISTS (SELECT FROM {registry} r WHERE r.function OPERATOR(pg_catalog.=) $1::regprocedure),
       a.rolname::text,
       CASE WHEN a.oid IS NOT NULL
            THEN has_function_privilege($2, $1, 'EXECUTE')
                 AND has_schema_privilege($2, p.pronamespace, 'USAGE')
            ELSE false END
FROM pg_proc p
LEFT JOIN pg_roles a ON a.oid = $2
WHERE p.oid = $1
