-- pq 0.5.0 -> 0.5.1: input checks and grants found by a review; no change to any table.
-- * The views pq_stats and pq_failed are readable by every role (security_invoker: the functions
--   they call check the caller's privileges on the queue table, as they do when called directly).
-- * pq_queue_table(tbl): the queue-table check of the C functions, for pq_jobs and pq_failed,
--   which now refuse NULL arguments (22004) and tables of another layout (42809);
--   pq_work_loop refuses max_jobs < 1.
-- * pq_create_table refuses names over 63 bytes (42622) and never shows its DDL in an error
--   (a duplicate is 42P07); a long name's index names are shortened and hashed so that
--   PostgreSQL does not cut them alike.
-- CREATE OR REPLACE resets settings given with ALTER FUNCTION ... SET (see the README).

ALTER VIEW pq_stats SET (security_invoker = true);
GRANT SELECT ON pq_stats TO PUBLIC;
ALTER VIEW pq_failed SET (security_invoker = true);
GRANT SELECT ON pq_failed TO PUBLIC;

CREATE OR REPLACE FUNCTION pq_create_table(name text) RETURNS regclass
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    parts text[];
    qualified text;
    relname text;
    base text;
    detail text;
    code text;
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'table name must not be NULL or empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'pass a name such as ''jobs''';
    END IF;
    BEGIN
        parts := parse_ident(name);
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'invalid table name %',
            quote_literal(left(name, 100)) || CASE WHEN length(name) > 100 THEN '...' ELSE '' END
            USING ERRCODE = 'invalid_name',
                  HINT = 'use an identifier such as ''jobs'', ''app.jobs'' or ''"My Jobs"''';
    END;
    IF array_length(parts, 1) > 2 THEN
        RAISE EXCEPTION 'invalid table name %: at most schema.table',
            quote_literal(left(name, 100)) || CASE WHEN length(name) > 100 THEN '...' ELSE '' END
            USING ERRCODE = 'invalid_name', HINT = 'use ''jobs'' or ''app.jobs''';
    END IF;
    relname := parts[array_length(parts, 1)];
    -- PostgreSQL would cut a longer name to 63 bytes, making a table other than the one asked for.
    FOR i IN 1 .. array_length(parts, 1) LOOP
        IF octet_length(parts[i]) > 63 THEN
            RAISE EXCEPTION '% name % is % bytes long: PostgreSQL names are at most 63',
                CASE WHEN i = array_length(parts, 1) THEN 'table' ELSE 'schema' END,
                quote_literal(left(parts[i], 20) || '...'), octet_length(parts[i])
                USING ERRCODE = 'name_too_long', HINT = 'use a shorter name such as ''jobs''';
        END IF;
    END LOOP;
    -- Index names are the table's name and a suffix of up to 24 bytes. A name too long for that is
    -- shortened and a hash of it added (64 bits), so that PostgreSQL does not cut them alike.
    base := relname;
    IF octet_length(relname) > 39 THEN
        WHILE octet_length(base) > 22 LOOP
            base := left(base, -1);
        END LOOP;
        base := base || '_' || left(md5(relname), 16);
    END IF;
    -- @extschema@ is replaced by the already-quoted schema name.
    qualified := (CASE WHEN array_length(parts, 1) = 2 THEN quote_ident(parts[1]) ELSE '@extschema@' END)
                 || '.' || quote_ident(relname);
    BEGIN
        EXECUTE format($ddl$
            CREATE TABLE %1$s (
                id          bigserial PRIMARY KEY,
                enqueued_at timestamptz NOT NULL DEFAULT now(),
                dequeued_at timestamptz,
                expected_at timestamptz,
                schedule_at timestamptz,
                q_name      text NOT NULL CHECK (length(q_name) > 0),
                data        jsonb NOT NULL,
                -- Who put the job: a task runs as this role (set by the trigger below).
                enqueued_by regrole NOT NULL,
                -- A unique job's key: one pending job per (q_name, key) (src/queue/unique.rs).
                key         text,
                -- When pq_cancel consumed it (src/operations/cancel.rs): cancelled, not done.
                cancelled_at timestamptz
            );
            -- Unscheduled pending jobs in claim order; done jobs leave the index.
            CREATE INDEX %2$I ON %1$s (q_name, expected_at NULLS LAST, id)
                WHERE dequeued_at IS NULL AND schedule_at IS NULL;
            -- Scheduled pending jobs by due time: a claim visits only the due ones.
            CREATE INDEX %3$I ON %1$s (q_name, schedule_at)
                WHERE dequeued_at IS NULL AND schedule_at IS NOT NULL;
            -- SQL tasks (functions that are signatures, ending in ')'): pq_work finds them without
            -- walking the jobs of client handlers that share the queue.
            CREATE INDEX %4$I ON %1$s (q_name, expected_at NULLS LAST, id)
                WHERE dequeued_at IS NULL AND schedule_at IS NULL AND (data->>'function') LIKE '%%)';
            CREATE INDEX %5$I ON %1$s (q_name, schedule_at)
                WHERE dequeued_at IS NULL AND schedule_at IS NOT NULL AND (data->>'function') LIKE '%%)';
            -- Finished jobs by when they were dequeued: pq_purge deletes the oldest.
            CREATE INDEX %6$I ON %1$s (dequeued_at) WHERE dequeued_at IS NOT NULL;
            -- Pending jobs by key: a put with a key finds the job it would duplicate.
            CREATE INDEX %7$I ON %1$s (q_name, key) WHERE key IS NOT NULL AND dequeued_at IS NULL;
            -- Also tells claims about jobs made ready (src/queue/heads.rs): every column of claim order.
            CREATE TRIGGER pq_enqueued_by BEFORE INSERT OR UPDATE OF data, enqueued_by, dequeued_at,
                schedule_at, expected_at, q_name ON %1$s
                FOR EACH ROW EXECUTE FUNCTION @extschema@.pq_stamp_enqueuer();
            $ddl$, qualified, base || '_ready_idx', base || '_scheduled_idx',
               base || '_sql_tasks_idx', base || '_sql_tasks_scheduled_idx', base || '_done_idx',
               base || '_key_idx');
    EXCEPTION WHEN OTHERS THEN
        -- Said without the DDL above in the error's context: no such schema, no CREATE on it,
        -- a relation or type with one of the names, a concurrent create of this table (a
        -- unique violation in the catalog, reported as the duplicate it is).
        GET STACKED DIAGNOSTICS detail = MESSAGE_TEXT, code = RETURNED_SQLSTATE;
        IF code IN ('23505', '42710') THEN
            code := '42P07';
        END IF;
        RAISE EXCEPTION 'cannot create queue table %: %', qualified, detail
            USING ERRCODE = code,
                  HINT = CASE code
                             WHEN '42P07' THEN 'pick another name (its indexes are named ' || base || '_ready_idx and so on), or pass an existing queue table as tbl => ' || quote_literal(qualified)
                             WHEN '3F000' THEN 'create the schema first, or pass an unqualified name such as ''jobs'''
                             ELSE 'the table, its sequence and its indexes are created as you, in its schema' END;
    END;
    RETURN qualified::regclass;
END
$fn$;

COMMENT ON FUNCTION pq_create_table(text) IS
'Creates a queue table with the layout of pq''s queue table. Example: SELECT pq_create_table(''jobs'')';

CREATE FUNCTION pq_queue_table(tbl regclass) RETURNS regclass
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pq_queue_table_wrapper';
COMMENT ON FUNCTION pq_queue_table(regclass) IS
'tbl, if it is a queue table (42809 if not, 22004 for NULL). Example: SELECT pq_queue_table(''jobs'')';

CREATE OR REPLACE FUNCTION pq_jobs(queue text, state text DEFAULT 'ready', max_rows integer DEFAULT 50,
                        tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (id bigint, status text, enqueued_at timestamptz, schedule_at timestamptz,
               expected_at timestamptz, data jsonb, error text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF queue IS NULL OR queue = '' THEN
        RAISE EXCEPTION 'queue name must not be %', CASE WHEN queue IS NULL THEN 'NULL' ELSE 'empty' END
            USING ERRCODE = CASE WHEN queue IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
                  HINT = 'name the queue, e.g. pq_jobs(''apples'')';
    END IF;
    PERFORM @extschema@.pq_queue_table(tbl);
    IF state IS NULL OR state NOT IN ('ready', 'scheduled', 'in_flight', 'failed') THEN
        RAISE EXCEPTION 'unknown job state %', coalesce(quote_literal(left(state, 100)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'pass ''ready'', ''scheduled'', ''in_flight'' or ''failed''';
    END IF;
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 1000 THEN
        RAISE EXCEPTION 'max_rows must be 1 to 1000, got %', coalesce(max_rows::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'pass a page size such as 50';
    END IF;
    IF state = 'failed' THEN
        -- Failed jobs are done jobs: this reads the table's done jobs (the dashboard's failed tab).
        RETURN QUERY EXECUTE format($q$
            SELECT q.id, 'failed'::text, q.enqueued_at, q.schedule_at, q.expected_at, q.data,
                   q.data->'errors'->-1->>'message'
            FROM %s q
            WHERE q.q_name = $1 AND q.dequeued_at IS NOT NULL AND q.data ? 'failed_at'
            ORDER BY q.dequeued_at DESC LIMIT $2 $q$, tbl) USING queue, max_rows;
        RETURN;
    END IF;
    -- Pending jobs only, in claim order (ready), by due time (scheduled); in flight: claimed by a
    -- running transaction, which holds its advisory key and is updating its row (as pq_stats
    -- counts them). No per-row function call: a queue with a million pending jobs is a scan.
    RETURN QUERY EXECUTE format($q$
        WITH held AS (
            SELECT DISTINCT l.objid FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
              AND l.classid = %1$L::regclass::oid
              AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
        ), jobs AS (
            SELECT q.*, (h.objid IS NOT NULL AND q.xmax <> '0'::xid) AS claimed
            FROM %1$s q LEFT JOIN held h ON h.objid = (q.id & 4294967295)::oid
            WHERE q.q_name = $1 AND q.dequeued_at IS NULL
        )
        SELECT j.id, $3, j.enqueued_at, j.schedule_at, j.expected_at, j.data, NULL::text
        FROM jobs j
        WHERE CASE $3 WHEN 'in_flight' THEN j.claimed
                      WHEN 'ready' THEN NOT j.claimed AND (j.schedule_at IS NULL OR j.schedule_at <= now())
                      ELSE NOT j.claimed AND j.schedule_at > now() END
        ORDER BY CASE WHEN $3 = 'ready' THEN NULL ELSE j.schedule_at END, j.expected_at NULLS LAST, j.id
        LIMIT $2 $q$, tbl) USING queue, max_rows, state;
END
$fn$;
COMMENT ON FUNCTION pq_jobs(text, text, integer, regclass) IS
'Up to max_rows jobs of a queue in a state: ready (in claim order), scheduled, in_flight, or failed (with the last error). Example: SELECT * FROM pq_jobs(''apples'', ''scheduled'')';

CREATE OR REPLACE FUNCTION pq_failed(tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (id bigint, queue text, function text, retried integer, sqlstate text,
               message text, failed_at timestamptz, errors jsonb)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM @extschema@.pq_queue_table(tbl);
    -- tbl is a regclass: formatted as its quoted, schema-qualified name, never raw text. Every
    -- field is read so that no payload a producer wrote can make this fail.
    RETURN QUERY EXECUTE format($q$
        SELECT q.id, q.q_name, q.data->>'function',
               CASE WHEN q.data->>'retried' ~ '^-?[0-9]{1,9}$' THEN (q.data->>'retried')::integer END,
               q.data->'errors'->-1->>'sqlstate', q.data->'errors'->-1->>'message',
               %s.pq_timestamptz(q.data->>'failed_at'),
               CASE WHEN jsonb_typeof(q.data->'errors') = 'array' THEN q.data->'errors' END
        FROM %s q
        WHERE q.dequeued_at IS NOT NULL AND q.data ? 'failed_at'
        ORDER BY q.id $q$, '@extschema@', tbl);
END
$fn$;
COMMENT ON FUNCTION pq_failed(regclass) IS
'Task jobs that failed for good, with their last error. Example: SELECT * FROM pq_failed(''jobs'')';

CREATE OR REPLACE PROCEDURE pq_work_loop(
    queue text, max_jobs integer DEFAULT NULL, burst boolean DEFAULT true,
    timeout interval DEFAULT '1s', tbl regclass DEFAULT '@extschema@.queue')
LANGUAGE plpgsql
AS $proc$
DECLARE
    performed integer := 0;
    got integer;
BEGIN
    -- pq_work checks the other arguments; a count below 1 would otherwise do nothing silently.
    IF max_jobs OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'max_jobs must be at least 1, got %', max_jobs
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'pass a count such as 100, or leave it out to work until the queue is empty';
    END IF;
    LOOP
        EXIT WHEN max_jobs IS NOT NULL AND performed OPERATOR(pg_catalog.>=) max_jobs;
        SELECT pg_catalog.count(*) INTO got FROM @extschema@.pq_work(queue, burst, timeout, 1, tbl);
        EXIT WHEN got OPERATOR(pg_catalog.=) 0;
        performed := performed OPERATOR(pg_catalog.+) got;
        COMMIT;
    END LOOP;
END
$proc$;
COMMENT ON PROCEDURE pq_work_loop(text, integer, boolean, interval, regclass) IS
'Performs tasks, committing after each. Example: CALL pq_work_loop(''default'')';
