-- The queue table layout, in one place: the extension's own `queue` table and every table a
-- user adds with pq_create_table() are made by the same function.

-- pq_stamp_enqueuer(): the trigger that records who enqueued a job (src/tasks/enqueuer.rs). A
-- producer cannot forge enqueued_by: inserts, and updates that change data or enqueued_by or
-- put a consumed job back, are stamped with the current role, whatever they wrote.
CREATE FUNCTION pq_stamp_enqueuer() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pq_stamp_enqueuer_wrapper';

-- pq_create_table(name): creates a queue table with Python pq's columns and the indexes that
-- keep claiming cheap. `name` is an identifier, optionally schema-qualified ('jobs',
-- 'app.jobs', '"Mixed Case"'); unqualified names go in the extension's schema. The name is
-- split by parse_ident and each part quoted, so it is never spliced into SQL raw.
CREATE FUNCTION pq_create_table(name text) RETURNS regclass
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

SELECT pq_create_table('queue');
COMMENT ON TABLE queue IS 'Jobs of every queue (Python pq layout). Use pq_put / pq_get.';

-- Extension member tables are not dumped by pg_dump unless marked: jobs are data.
SELECT pg_catalog.pg_extension_config_dump('queue', '');
SELECT pg_catalog.pg_extension_config_dump('queue_id_seq', '');

-- Functions registered as tasks: the only ones pq_work ever calls (pq_register_task).
CREATE TABLE pq_registered_tasks (
    function      regprocedure PRIMARY KEY,
    registered_by regrole NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pq_registered_tasks IS 'Functions registered as tasks; use pq_register_task and the pq_tasks view.';
SELECT pg_catalog.pg_extension_config_dump('pq_registered_tasks', '');
GRANT SELECT ON pq_registered_tasks TO PUBLIC;

-- Per-queue controls (src/operations/controls.rs): paused queues and concurrency limits. A
-- claim reads them from a per-session cache; the trigger below invalidates every session's
-- cache of the queue table at commit. Anyone may read them (every claimer must); only pq's
-- functions write them, as the table's owner, for a role that may UPDATE the queue table (a
-- role that could write them could also LOCK them, and stall every claim).
CREATE TABLE pq_queue_controls (
    tbl               regclass NOT NULL,
    q_name            text NOT NULL CHECK (length(q_name) > 0),
    paused_at         timestamptz,
    paused_by         regrole,
    concurrency_limit integer CHECK (concurrency_limit BETWEEN 1 AND 1000),
    PRIMARY KEY (tbl, q_name)
);
COMMENT ON TABLE pq_queue_controls IS 'Paused queues and concurrency limits; use pq_pause, pq_resume, pq_set_limit.';
SELECT pg_catalog.pg_extension_config_dump('pq_queue_controls', '');
GRANT SELECT ON pq_queue_controls TO PUBLIC;

CREATE FUNCTION pq_controls_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pq_controls_changed_wrapper';
CREATE TRIGGER pq_controls_changed AFTER INSERT OR UPDATE OR DELETE ON pq_queue_controls
    FOR EACH ROW EXECUTE FUNCTION pq_controls_changed();
CREATE TRIGGER pq_controls_truncated AFTER TRUNCATE ON pq_queue_controls
    FOR EACH STATEMENT EXECUTE FUNCTION pq_controls_changed();

-- Periodic jobs (src/operations/periodic.rs): each due tick enqueues one job as the
-- schedule's owner. A role sees only the schedules of roles whose rights it has; only pq's
-- functions write them (as the table's owner), so no role can lock the table or forge a row.
CREATE TABLE pq_periodic (
    name       text PRIMARY KEY CHECK (length(name) > 0),
    cron       text NOT NULL,
    q_name     text NOT NULL CHECK (length(q_name) > 0),
    data       jsonb NOT NULL,
    tbl        regclass NOT NULL,
    owner      regrole NOT NULL DEFAULT current_user::regrole,
    next_run   timestamptz NOT NULL,
    last_run   timestamptz,
    last_job   bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pq_periodic IS 'Periodic jobs; use pq_schedule, pq_unschedule and the pq_schedules view.';
SELECT pg_catalog.pg_extension_config_dump('pq_periodic', '');
ALTER TABLE pq_periodic ENABLE ROW LEVEL SECURITY;
CREATE POLICY pq_own ON pq_periodic FOR SELECT
    USING (pg_catalog.pg_has_role(owner, 'USAGE'));
GRANT SELECT ON pq_periodic TO PUBLIC;
