-- What calling function $1 needs: its quoted qualified name, kind, and the names, types
-- (as SQL, qualified where not in pg_catalog) and type oids of its input parameters.
SELECT format('%I.%I', n.nspname, p.proname),
       p.prokind::text,
       coalesce(array_agg(a.name ORDER BY a.i) FILTER (WHERE a.i IS NOT NULL), '{}'),
       coalesce(array_agg(format_type(a.type, NULL) ORDER BY a.i) FILTER (WHERE a.i IS NOT NULL), '{}'),
       coalesce(array_agg(a.type ORDER BY a.i) FILTER (WHERE a.i IS NOT NULL), '{}')
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN LATERAL (
    SELECT i, coalesce(p.proargnames[i], '') AS name,
           coalesce(p.proallargtypes[i], p.proargtypes[i - 1]) AS type
    FROM generate_series(1, coalesce(array_length(p.proallargtypes, 1), p.pronargs)) AS i
    WHERE coalesce(p.proargmodes[i], 'i') IN ('i', 'b', 'v')
) a ON true
WHERE p.oid = $1
GROUP BY n.nspname, p.proname, p.prokind
