-- pq 0.1.0 -> 0.2.0: pq_failed(tbl) lists failed task jobs of any queue table; the pq_failed
-- view now reads it. This file is also the tail of the 0.2.0 install script (src/lib.rs pulls
-- it in after sql/api.sql), so a fresh install and an upgrade end in the same schema, which
-- tests/python/test_upgrade.py checks.

CREATE FUNCTION pq_failed(tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (id bigint, queue text, function text, retried integer, sqlstate text,
               message text, failed_at timestamptz, errors jsonb)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- tbl is a regclass: formatted as its quoted, schema-qualified name, never raw text.
    RETURN QUERY EXECUTE format($q$
        SELECT q.id, q.q_name, q.data->>'function', (q.data->>'retried')::integer,
               q.data->'errors'->-1->>'sqlstate', q.data->'errors'->-1->>'message',
               (q.data->>'failed_at')::timestamptz, q.data->'errors'
        FROM %s q
        WHERE q.dequeued_at IS NOT NULL AND q.data ? 'failed_at'
        ORDER BY q.id $q$, tbl);
END
$fn$;
COMMENT ON FUNCTION pq_failed(regclass) IS
'Task jobs that failed for good, with their last error. Example: SELECT * FROM pq_failed(''jobs'')';

CREATE OR REPLACE VIEW pq_failed AS SELECT * FROM @extschema@.pq_failed();
