-- pq 0.4.0 -> 0.5.0: operating queues.
-- * Unique jobs: a key column and a *_key_idx index on every queue table, and key => on
--   pq_put, pq_put_many and pq_put_task; a cancelled_at column for pq_cancel.
-- * Pause, resume and concurrency limits (table pq_queue_controls), cancel and status,
--   periodic jobs (table pq_periodic, view pq_schedules), retry backoff on pq_put_task.
-- * pq_stats gains cancelled, paused and concurrency_limit.
-- Existing jobs are kept as they are; no job has a key.

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
            ALTER TABLE %1$s ADD COLUMN key text, ADD COLUMN cancelled_at timestamptz;
            CREATE INDEX %2$I ON %1$s (q_name, key) WHERE key IS NOT NULL AND dequeued_at IS NULL;
            $ddl$, t.tbl, t.relname || '_key_idx');
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
        $ddl$, qualified, relname || '_ready_idx', relname || '_scheduled_idx',
           relname || '_sql_tasks_idx', relname || '_sql_tasks_scheduled_idx', relname || '_done_idx',
           relname || '_key_idx');
    RETURN qualified::regclass;
END
$fn$;


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

-- The puts take key =>; pq_put_task also backoff => and retry_max =>.
DROP FUNCTION pq_put(text, jsonb, text, text, regclass);
DROP FUNCTION pq_put(text, jsonb, interval, interval, regclass);
DROP FUNCTION pq_put(text, jsonb, timestamptz, timestamptz, regclass);
DROP FUNCTION pq_put_many(text, jsonb[], text, text, regclass);
DROP FUNCTION pq_put_task(text, text, jsonb, jsonb, text, text, integer, text, regclass, boolean, text);

CREATE FUNCTION pq_put(
    queue text, data jsonb, schedule_at text DEFAULT NULL, expected_at text DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue', key text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_text_wrapper';
COMMENT ON FUNCTION pq_put(text, jsonb, text, text, regclass, text) IS
'Enqueues a job, returns its id. Times: a duration (''5m'', ''1h 30m'') or a timestamp. With key, a unique job: while a job of the queue with that key is pending, returns its id and inserts nothing. Example: SELECT pq_put(''apples'', ''{"kind":"Cox"}'', ''5m'', key => ''cox-1'')';

CREATE FUNCTION pq_put(
    queue text, data jsonb, schedule_at interval, expected_at interval DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue', key text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_interval_wrapper';
COMMENT ON FUNCTION pq_put(text, jsonb, interval, interval, regclass, text) IS
'Enqueues a job scheduled an interval from now. Example: SELECT pq_put(''apples'', ''{}'', interval ''5 minutes'')';

CREATE FUNCTION pq_put(
    queue text, data jsonb, schedule_at timestamptz, expected_at timestamptz DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue', key text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_timestamptz_wrapper';
COMMENT ON FUNCTION pq_put(text, jsonb, timestamptz, timestamptz, regclass, text) IS
'Enqueues a job scheduled at a time. Example: SELECT pq_put(''apples'', ''{}'', now() + interval ''1 hour'')';

CREATE FUNCTION pq_put_many(
    queue text, data jsonb[], schedule_at text DEFAULT NULL, expected_at text DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue', key text[] DEFAULT NULL)
RETURNS SETOF bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_many_wrapper';
COMMENT ON FUNCTION pq_put_many(text, jsonb[], text, text, regclass, text[]) IS
'Enqueues one job per array element; returns the ids in order. With key (one per element, NULL for none), unique jobs as in pq_put. Example: SELECT * FROM pq_put_many(''apples'', ARRAY[''{"kind":"Cox"}'']::jsonb[])';

CREATE FUNCTION pq_put_task(
    queue text, function text, args jsonb DEFAULT '[]', kwargs jsonb DEFAULT '{}',
    schedule_at text DEFAULT NULL, expected_at text DEFAULT NULL,
    max_retries integer DEFAULT 0, retry_in text DEFAULT '30s',
    tbl regclass DEFAULT '@extschema@.queue', external boolean DEFAULT false,
    timeout text DEFAULT NULL, key text DEFAULT NULL, backoff text DEFAULT NULL,
    retry_max text DEFAULT NULL)
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_put_task_wrapper';
COMMENT ON FUNCTION pq_put_task(text, text, jsonb, jsonb, text, text, integer, text, regclass, boolean, text, text, text, text) IS
'Enqueues a task calling a registered SQL function, checked now (timeout: this task''s limit, default pq.task_timeout); with external => true, for a client handler (Python, Rust); key: a unique job as in pq_put; backoff => ''exponential'': retry after retry_in, then twice that, ... up to retry_max (default ''1h''), with jitter. Example: SELECT pq_put_task(''default'', ''eat(text)'', ''["Cox"]'', max_retries => 2)';

-- pq_stats gains columns.
DROP VIEW pq_stats;
DROP FUNCTION pq_stats(regclass);

CREATE FUNCTION pq_stats(tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (queue text, ready bigint, scheduled bigint, in_flight bigint, done bigint,
               oldest_ready_age interval, squatted bigint, cancelled bigint, paused boolean,
               concurrency_limit integer)
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_stats_wrapper';
COMMENT ON FUNCTION pq_stats(regclass) IS
'Per-queue counts: ready, scheduled, in flight, done, oldest ready age, squatted (pending jobs whose lock key another session holds without claiming them), cancelled; whether the queue is paused, and its concurrency limit. Example: SELECT * FROM pq_stats()';

CREATE VIEW pq_stats AS SELECT * FROM @extschema@.pq_stats();
COMMENT ON VIEW pq_stats IS 'pq_stats() of the extension''s queue table';

-- Operating queues: pause, concurrency limits, cancel (src/operations/).
CREATE FUNCTION pq_pause(queue text, tbl regclass DEFAULT '@extschema@.queue')
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_pause_wrapper';
COMMENT ON FUNCTION pq_pause(text, regclass) IS
'Pauses a queue: it still accepts puts, but nothing takes its jobs until pq_resume. True if it was not paused. Example: SELECT pq_pause(''apples'')';

CREATE FUNCTION pq_resume(queue text, tbl regclass DEFAULT '@extschema@.queue')
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_resume_wrapper';
COMMENT ON FUNCTION pq_resume(text, regclass) IS
'Resumes a paused queue and wakes its blocked getters. True if it was paused. Example: SELECT pq_resume(''apples'')';

CREATE FUNCTION pq_set_limit(queue text, n integer, tbl regclass DEFAULT '@extschema@.queue')
RETURNS integer LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_set_limit_wrapper';
COMMENT ON FUNCTION pq_set_limit(text, integer, regclass) IS
'At most n jobs of the queue are claimed at once, across all sessions and workers; NULL removes the limit. Returns the previous limit. Example: SELECT pq_set_limit(''apples'', 2)';

CREATE FUNCTION pq_cancel(id bigint, tbl regclass DEFAULT '@extschema@.queue', wait interval DEFAULT '10s')
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_cancel_wrapper';
COMMENT ON FUNCTION pq_cancel(bigint, regclass, interval) IS
'Cancels a job: a pending or scheduled one never runs; the transaction that holds a claimed one is cancelled (as pg_cancel_backend) and the job does not come back. False if the job is already done, failed or cancelled. Example: SELECT pq_cancel(42)';

CREATE FUNCTION pq_status(id bigint, tbl regclass DEFAULT '@extschema@.queue')
RETURNS text LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_status_wrapper';
COMMENT ON FUNCTION pq_status(bigint, regclass) IS
'A job''s state: ready, scheduled, in_flight, done, failed or cancelled; NULL when there is no such job (or it was purged). Example: SELECT pq_status(42)';

CREATE FUNCTION pq_metrics(tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (metric text, queue text, label text, value double precision)
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_metrics_wrapper';
COMMENT ON FUNCTION pq_metrics(regclass) IS
'Per-queue metrics, one row per sample: gauges from the pending jobs (ready, scheduled, in flight, oldest ready age, paused, limit) and, when pq is preloaded, counters (puts, claims, task outcomes) and the wake-up latency histogram. pq serve exposes them to Prometheus. Example: SELECT * FROM pq_metrics()';

CREATE FUNCTION pq_jobs(queue text, state text DEFAULT 'ready', max_rows integer DEFAULT 50,
                        tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (id bigint, status text, enqueued_at timestamptz, schedule_at timestamptz,
               expected_at timestamptz, data jsonb, error text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF state IS NULL OR state NOT IN ('ready', 'scheduled', 'in_flight', 'failed') THEN
        RAISE EXCEPTION 'unknown job state %', coalesce(quote_literal(state), 'NULL')
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

-- Periodic jobs (src/operations/periodic.rs).
CREATE FUNCTION pq_schedule(name text, cron text, queue text, data jsonb DEFAULT '{}',
                            tbl regclass DEFAULT '@extschema@.queue')
RETURNS timestamptz LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_schedule_wrapper';
COMMENT ON FUNCTION pq_schedule(text, text, text, jsonb, regclass) IS
'Creates or replaces a periodic job: at each tick of a 5-field cron schedule (UTC), one job with data is put in queue, as the role that scheduled it. Returns the next run. Example: SELECT pq_schedule(''nightly-report'', ''0 3 * * *'', ''reports'', ''{"kind":"daily"}'')';

CREATE FUNCTION pq_unschedule(name text)
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_unschedule_wrapper';
COMMENT ON FUNCTION pq_unschedule(text) IS
'Removes a periodic job; true if it existed. Example: SELECT pq_unschedule(''nightly-report'')';

CREATE FUNCTION pq_run_schedules()
RETURNS integer LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pq_run_schedules_wrapper';
COMMENT ON FUNCTION pq_run_schedules() IS
'Puts one job for every periodic job that is due (the maintenance worker calls it every second when pq is preloaded; elsewhere, call it from pg_cron). Returns how many. Example: SELECT pq_run_schedules()';

CREATE VIEW pq_schedules WITH (security_invoker = true) AS
SELECT name, cron, q_name AS queue, data, tbl, owner, next_run, last_run, last_job, created_at
FROM @extschema@.pq_periodic;
COMMENT ON VIEW pq_schedules IS 'Periodic jobs (of the roles you belong to), with their next and last run';
GRANT SELECT ON pq_schedules TO PUBLIC;

