-- pq 0.3.0 -> 0.4.0: bounded growth and claims that hold up under held snapshots.
-- * Finished jobs are deleted after pq.retention by pq_purge() (and by the maintenance worker
--   when pq is preloaded), found through a new *_done_idx index on every queue table.
-- * The pq_enqueued_by trigger also fires when schedule_at, expected_at or q_name change, so
--   claims learn of every job made ready (src/heads.rs).

DO $upgrade$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT tg.tgrelid::regclass AS tbl, c.relname
        FROM pg_catalog.pg_trigger tg
        JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
        WHERE tg.tgname = 'pq_enqueued_by'
          AND tg.tgfoid = '@extschema@.pq_stamp_enqueuer()'::pg_catalog.regprocedure
    LOOP
        EXECUTE pg_catalog.format($ddl$
            CREATE INDEX %2$I ON %1$s (dequeued_at) WHERE dequeued_at IS NOT NULL;
            DROP TRIGGER pq_enqueued_by ON %1$s;
            CREATE TRIGGER pq_enqueued_by BEFORE INSERT OR UPDATE OF data, enqueued_by, dequeued_at,
                schedule_at, expected_at, q_name ON %1$s
                FOR EACH ROW EXECUTE FUNCTION @extschema@.pq_stamp_enqueuer();
            $ddl$, t.tbl, t.relname || '_done_idx');
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
        -- Finished jobs by when they were dequeued: pq_purge deletes the oldest.
        CREATE INDEX %6$I ON %1$s (dequeued_at) WHERE dequeued_at IS NOT NULL;
        -- Also tells claims about jobs made ready (src/heads.rs): every column of claim order.
        CREATE TRIGGER pq_enqueued_by BEFORE INSERT OR UPDATE OF data, enqueued_by, dequeued_at,
            schedule_at, expected_at, q_name ON %1$s
            FOR EACH ROW EXECUTE FUNCTION @extschema@.pq_stamp_enqueuer();
        $ddl$, qualified, relname || '_ready_idx', relname || '_scheduled_idx',
           relname || '_sql_tasks_idx', relname || '_sql_tasks_scheduled_idx', relname || '_done_idx');
    RETURN qualified::regclass;
END
$fn$;

CREATE FUNCTION pq_purge(older_than interval DEFAULT NULL, max_rows integer DEFAULT 10000,
                         failed boolean DEFAULT false, tbl regclass DEFAULT '@extschema@.queue')
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_purge_wrapper';
COMMENT ON FUNCTION pq_purge(interval, integer, boolean, regclass) IS
'Deletes up to max_rows finished jobs dequeued longer ago than older_than (default pq.retention), oldest first; failed task jobs only with failed => true. Example: SELECT pq_purge(''1 day'')';
