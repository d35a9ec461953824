-- The SQL API. Bodies are Rust (src/*.rs); the declarations are written here by hand so the
-- table argument can be a regclass with a default bound to this extension's own table, and
-- so every function pins search_path: a caller's hostile search_path cannot redirect the
-- statements they run. Functions are not STRICT, so a NULL gets a clear error, not a NULL.
--
-- tbl: the queue table, resolved by PostgreSQL in the caller's search_path ('jobs',
-- 'app.jobs'); unknown names raise 42P01 before pq runs.

CREATE FUNCTION pq_put(
    queue text, data jsonb, schedule_at text DEFAULT NULL, expected_at text DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue')
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pq_put_text_wrapper';
COMMENT ON FUNCTION pq_put(text, jsonb, text, text, regclass) IS
'Enqueues a job, returns its id. Times: a duration (''5m'', ''1h 30m'') or a timestamp. Example: SELECT pq_put(''apples'', ''{"kind":"Cox"}'', ''5m'')';

CREATE FUNCTION pq_put(
    queue text, data jsonb, schedule_at interval, expected_at interval DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue')
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pq_put_interval_wrapper';
COMMENT ON FUNCTION pq_put(text, jsonb, interval, interval, regclass) IS
'Enqueues a job scheduled an interval from now. Example: SELECT pq_put(''apples'', ''{}'', interval ''5 minutes'')';

CREATE FUNCTION pq_put(
    queue text, data jsonb, schedule_at timestamptz, expected_at timestamptz DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue')
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pq_put_timestamptz_wrapper';
COMMENT ON FUNCTION pq_put(text, jsonb, timestamptz, timestamptz, regclass) IS
'Enqueues a job scheduled at a time. Example: SELECT pq_put(''apples'', ''{}'', now() + interval ''1 hour'')';

CREATE FUNCTION pq_put_many(
    queue text, data jsonb[], schedule_at text DEFAULT NULL, expected_at text DEFAULT NULL,
    tbl regclass DEFAULT '@extschema@.queue')
RETURNS SETOF bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pq_put_many_wrapper';
COMMENT ON FUNCTION pq_put_many(text, jsonb[], text, text, regclass) IS
'Enqueues one job per array element in one statement; returns the ids in order. Example: SELECT * FROM pq_put_many(''apples'', ARRAY[''{"kind":"Cox"}'']::jsonb[])';

CREATE FUNCTION pq_get(
    queue text, timeout interval DEFAULT '0', batch_size integer DEFAULT 1,
    tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (id bigint, data jsonb, size integer, enqueued_at timestamptz,
               schedule_at timestamptz, expected_at timestamptz)
LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pq_get_wrapper';
COMMENT ON FUNCTION pq_get(text, interval, integer, regclass) IS
'Claims up to batch_size ready jobs for this transaction, waiting up to timeout (NULL: until interrupted). Example: SELECT * FROM pq_get(''apples'', ''5s'')';

CREATE FUNCTION pq_len(queue text, tbl regclass DEFAULT '@extschema@.queue')
RETURNS bigint LANGUAGE c STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pq_len_wrapper';
COMMENT ON FUNCTION pq_len(text, regclass) IS
'Number of ready jobs in a queue. Example: SELECT pq_len(''apples'')';

CREATE FUNCTION pq_clear(queue text, tbl regclass DEFAULT '@extschema@.queue')
RETURNS bigint LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pq_clear_wrapper';
COMMENT ON FUNCTION pq_clear(text, regclass) IS
'Deletes every job of a queue; returns how many. Example: SELECT pq_clear(''apples'')';

CREATE FUNCTION pq_update(queue text, id bigint, data jsonb, tbl regclass DEFAULT '@extschema@.queue')
RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pq_update_wrapper';
COMMENT ON FUNCTION pq_update(text, bigint, jsonb, regclass) IS
'Replaces a job''s data; true when the job exists. Example: SELECT pq_update(''apples'', 42, ''{"kind":"Bramley"}'')';

CREATE FUNCTION pq_channel(queue text)
RETURNS text LANGUAGE c IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pq_channel_wrapper';
COMMENT ON FUNCTION pq_channel(text) IS
'The NOTIFY channel pq_put signals for a queue. Example: SELECT pq_channel(''apples'')';

CREATE FUNCTION pq_stats(tbl regclass DEFAULT '@extschema@.queue')
RETURNS TABLE (queue text, ready bigint, scheduled bigint, in_flight bigint, done bigint,
               oldest_ready_age interval)
LANGUAGE c VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pq_stats_wrapper';
COMMENT ON FUNCTION pq_stats(regclass) IS
'Per-queue counts: ready, scheduled, in flight, done, oldest ready age. Example: SELECT * FROM pq_stats()';

CREATE VIEW pq_stats AS SELECT * FROM @extschema@.pq_stats();
COMMENT ON VIEW pq_stats IS 'pq_stats() of the extension''s queue table';
