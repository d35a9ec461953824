-- May role $2 enqueue a task calling function $1? (registered, allowed to execute it)
SELECT EXISTS (SELECT FROM {registry} r WHERE r.function OPERATOR(pg_catalog.=) $1::regprocedure),
       has_function_privilege($2, $1, 'EXECUTE')
