-- pq 0.2.0 -> 0.3.0: tasks become a privilege boundary.
-- * Every queue table gets enqueued_by (who put the job; a task runs as that role), stamped by
--   a trigger, and two partial indexes that find SQL tasks without walking other jobs.
-- * Only functions registered with pq_register_task run as tasks (table pq_registered_tasks,
--   view pq_tasks).
-- * pq_put_task takes a per-task timeout; pq_stats counts squatted jobs apart.
-- Jobs pending at the upgrade have no known enqueuer (enqueued_by = 0, a role that does not
-- exist): pq_work refuses them (42501) until an administrator vouches for them, e.g.
--   UPDATE queue SET enqueued_by = 'app'::regrole WHERE dequeued_at IS NULL;

CREATE FUNCTION pq_stamp_enqueuer() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pq_stamp_enqueuer_wrapper';

-- The new layout for every table of the queue layout (the extension's queue and those made by
-- pq_create_table), found by their columns.
DO $upgrade$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS tbl, c.relname
        FROM pg_catalog.pg_class c
        WHERE c.relkind IN ('r', 'p')
          AND (SELECT count(*) FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = c.oid AND NOT a.attisdropped AND (a.attname, a.atttypid) IN (
                   ('id', 'int8'::regtype), ('enqueued_at', 'timestamptz'::regtype),
                   ('dequeued_at', 'timestamptz'::regtype), ('expected_at', 'timestamptz'::regtype),
                   ('schedule_at', 'timestamptz'::regtype), ('q_name', 'text'::regtype),
                   ('data', 'jsonb'::regtype))) = 7
    LOOP
        EXECUTE pg_catalog.format($ddl$
            ALTER TABLE %1$s ADD COLUMN enqueued_by regrole NOT NULL DEFAULT 0::oid::regrole;
            ALTER TABLE %1$s ALTER COLUMN enqueued_by DROP DEFAULT;
            CREATE INDEX %2$I ON %1$s (q_name, expected_at NULLS LAST, id)
                WHERE dequeued_at IS NULL AND schedule_at IS NULL AND (data->>'function') LIKE '%%)';
            CREATE INDEX %3$I ON %1$s (q_name, schedule_at)
                WHERE dequeued_at IS NULL AND schedule_at IS NOT NULL AND (data->>'function') LIKE '%%)';
            CREATE TRIGGER pq_enqueued_by BEFORE INSERT OR UPDATE OF data, enqueued_by, dequeued_at ON %1$s
                FOR EACH ROW EXECUTE FUNCTION @extschema@.pq_stamp_enqueuer();
            $ddl$, t.tbl, t.relname || '_sql_tasks_idx', t.relname || '_sql_tasks_scheduled_idx');
    END LOOP;
END
$upgrade$;

-- pq_create_table makes the new layout.
CREATE OR REPLACE FUNCTION pq_create_table(name text) RETURNS regclass
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    parts text[];
    qualified text;
    relname text;
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'table name must not be NULL or empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'pass a name such as ''jobs''';
    END IF;
    BEGIN
        parts := parse_ident(name);
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'invalid table name %', quote_literal(name)
            USING ERRCODE = 'invalid_name',
                  HINT = 'use an identifier such as ''jobs'', ''app.jobs'' or ''"My Jobs"''';
    END;
    IF array_length(parts, 1) > 2 THEN
        RAISE EXCEPTION 'invalid table name %: at most schema.table', quote_literal(name)
            USING ERRCODE = 'invalid_name', HINT = 'use ''jobs'' or ''app.jobs''';
    END IF;
    relname := parts[array_length(parts, 1)];
    -- @extschema@ is replaced by the already-quoted schema name.
    qualified := (CASE WHEN array_length(parts, 1) = 2 THEN quote_ident(parts[1]) ELSE '@extschema@' END)
                 || '.' || quote_ident(relname);
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
            enqueued_by regrole NOT NULL
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
        CREATE TRIGGER pq_enqueued_by BEFORE INSERT OR UPDATE OF data, enqueued_by, dequeued_at ON %1$s
            FOR EACH ROW EXECUTE FUNCTION @extschema@.pq_stamp_enqueuer();
        $ddl$, qualified, relname || '_ready_idx', relname || '_scheduled_idx',
           relname || '_sql_tasks_idx', relname || '_sql_tasks_scheduled_idx');
    RETURN qualified::regclass;
END
$fn$;


-- Functions registered as tasks: the only ones pq_work ever calls (pq_register_task).
CREATE TABLE pq_registered_tasks (
    function      regprocedure PRIMARY KEY,
    registered_by regrole NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pq_registered_tasks IS 'Functions registered as tasks; use pq_register_task and the pq_tasks view.';
SELECT pg_catalog.pg_extension_config_dump('pq_registered_tasks', '');
GRANT SELECT ON pq_registered_tasks TO PUBLIC;

DROP FUNCTION pq_put_task(text, text, jsonb, jsonb, text, text, integer, text, regclass, boolean);
CREATE FUNCTION pq_put_task(
    queue text, function text, args jsonb DEFAULT '[]', kwargs jsonb DEFAULT '{}',
    schedule_at text DEFAULT NULL, expected_at text DEFAULT NULL,
    max_retries integer DEFAULT 0, retry_in text DEFAULT '30s',
    tbl regclass DEFAULT '@extschema@.queue', external boolean DEFAULT false,
    timeout text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_task_wrapper';
COMMENT ON FUNCTION pq_put_task(text, text, jsonb, jsonb, text, text, integer, text, regclass, boolean, text) IS
'Enqueues a task calling a registered SQL function, checked now (timeout: this task''s limit, default pq.task_timeout); with external => true, for a client handler (Python, Rust). Example: SELECT pq_put_task(''default'', ''eat(text)'', ''["Cox"]'', max_retries => 2)';

DROP VIEW pq_stats;
DROP FUNCTION pq_stats(regclass);
CREATE FUNCTION pq_stats(tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (queue text, ready bigint, scheduled bigint, in_flight bigint, done bigint,
               oldest_ready_age interval, squatted bigint)
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_stats_wrapper';
COMMENT ON FUNCTION pq_stats(regclass) IS
'Per-queue counts: ready, scheduled, in flight, done, oldest ready age, squatted (pending jobs whose lock key another session holds without claiming them). Example: SELECT * FROM pq_stats()';

CREATE VIEW pq_stats AS SELECT * FROM @extschema@.pq_stats();
COMMENT ON VIEW pq_stats IS 'pq_stats() of the extension''s queue table';

-- The task registry: only registered functions ever run as tasks, whoever enqueued them.
CREATE FUNCTION pq_register_task(function regprocedure)
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_register_task_wrapper';
COMMENT ON FUNCTION pq_register_task(regprocedure) IS
'Registers a function as a task (its owner or a superuser only); true if it was not registered yet. Example: SELECT pq_register_task(''eat(text)'')';

CREATE FUNCTION pq_unregister_task(function regprocedure)
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_unregister_task_wrapper';
COMMENT ON FUNCTION pq_unregister_task(regprocedure) IS
'Unregisters a task function (its owner or a superuser only); true if it was registered. Example: SELECT pq_unregister_task(''eat(text)'')';

CREATE VIEW pq_tasks AS
SELECT t.function, p.proowner::regrole AS owner, t.registered_by, t.registered_at
FROM @extschema@.pq_registered_tasks t
JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.function::pg_catalog.oid
ORDER BY t.function::pg_catalog.text;
COMMENT ON VIEW pq_tasks IS 'Functions registered as tasks, with their owner';
GRANT SELECT ON pq_tasks TO PUBLIC;

-- pq_failed reads job data that producers wrote without failing on any of it.
-- A timestamptz written in job data, or NULL when it is not one: job data comes from producers,
-- and a bad value must not break the views that show failures.
CREATE FUNCTION pq_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION pq_timestamptz(text) IS
'The timestamptz in a text, or NULL if it is not one (for reading job data). Example: SELECT pq_timestamptz(data->>''failed_at'') FROM queue';

CREATE OR REPLACE FUNCTION pq_failed(tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (id bigint, queue text, function text, retried integer, sqlstate text,
               message text, failed_at timestamptz, errors jsonb)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
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
