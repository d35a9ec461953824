"""Upgrades: install the previous release (0.1.0), fill queues, ALTER EXTENSION pq UPDATE, and
check every job is intact, every function works, and the schema (with views' options and
grants) equals a fresh install."""
import uuid

import psycopg2
import pytest
from conftest import connect

PREVIOUS = "0.1.0"


def new_db(version=None):
    name = "upgrade_" + uuid.uuid4().hex[:8]
    admin = connect("postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    admin.close()
    conn = connect(name)
    conn.autocommit = True
    conn.cursor().execute("CREATE EXTENSION pq" + (f" VERSION '{version}'" if version else ""))
    return conn


def rows(conn, sql, *args):
    cur = conn.cursor()
    cur.execute(sql, args or None)  # no args: '%' in the SQL is not a placeholder
    return cur.fetchall() if cur.description else None


SCHEMA = """
SELECT 'function ' || p.oid::regprocedure::text, pg_get_functiondef(p.oid)
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pq'
 -- the test build (scripts/test installs it) adds #[pg_test] functions in schema tests
 WHERE p.pronamespace::regnamespace::text <> 'tests'
UNION ALL
SELECT 'view ' || c.relname, pg_get_viewdef(c.oid) || ' options ' || coalesce(c.reloptions::text, '')
       || ' grants ' || coalesce(c.relacl::text, '')
  FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pq' WHERE c.relkind = 'v'
UNION ALL
SELECT 'index ' || indexname, indexdef FROM pg_indexes WHERE tablename = 'queue'
UNION ALL
SELECT 'column ' || attname, format_type(atttypid, atttypmod) || coalesce(' default ' || pg_get_expr(adbin, adrelid), '')
  FROM pg_attribute LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
  WHERE attrelid = 'queue'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY 1
"""


def test_upgrade_from_the_previous_release_keeps_jobs_and_matches_a_fresh_install():
    old = new_db(PREVIOUS)
    assert rows(old, "SELECT extversion FROM pg_extension WHERE extname = 'pq'")[0][0] == PREVIOUS
    rows(old, """CREATE FUNCTION rot(kind text) RETURNS void LANGUAGE plpgsql
                 AS $$ BEGIN RAISE EXCEPTION 'rotten %', kind; END $$""")
    # The new library serves the old schema until the upgrade: puts and gets work...
    rows(old, """SELECT pq_put('apples', '{"kind": "Cox"}'); SELECT pq_put('apples', '{"kind": "Fuji"}', '1h');
                 SELECT pq_put('apples', '{"kind": "Gala"}', expected_at => '5m');
                 SELECT * FROM pq_put_many('pears', ARRAY['{"n": 1}', '{"n": 2}']::jsonb[])""")
    rows(old, "SELECT * FROM pq_get('pears')")
    # ...but tasks wait for the upgrade (there is no registry yet).
    with pytest.raises(psycopg2.errors.UndefinedObject, match="ALTER EXTENSION pq UPDATE"):
        rows(old, """SELECT pq_put_task('tasks', 'rot(text)', '["Bramley"]')""")
    # A task job that failed under 0.1.0, as 0.1.0 recorded it.
    rows(old, """INSERT INTO queue (q_name, dequeued_at, data) VALUES ('tasks', now(),
                 '{"function": "public.rot(text)", "args": ["Bramley"], "kwargs": {}, "retried": 0,
                   "max_retries": 0, "retry_in": "30s", "failed_at": "2026-11-01T12:00:00+00:00",
                   "errors": [{"attempt": 1, "sqlstate": "P0001", "message": "rotten Bramley",
                               "at": "2026-11-01T12:00:00+00:00"}]}')""")
    jobs = "SELECT id, enqueued_at, dequeued_at, expected_at, schedule_at, q_name, data FROM queue ORDER BY id"
    before = rows(old, jobs)

    rows(old, "ALTER EXTENSION pq UPDATE")
    current = rows(old, "SELECT default_version FROM pg_available_extensions WHERE name = 'pq'")[0][0]
    assert current != PREVIOUS
    assert rows(old, "SELECT extversion FROM pg_extension WHERE extname = 'pq'")[0][0] == current
    assert rows(old, jobs) == before, "every job intact"
    # Jobs from before 0.3.0 have no known enqueuer (0): their tasks are refused until vouched for.
    assert rows(old, "SELECT DISTINCT enqueued_by::oid::int FROM queue") == [(0,)]

    # Every function works on the upgraded database.
    assert rows(old, "SELECT data->>'kind' FROM pq_get('apples')")[0][0] == "Gala"
    assert rows(old, "SELECT pq_len('apples'), pq_len('pears')") == [(1, 1)]
    assert rows(old, "SELECT pq_put('apples', '{}', interval '1 minute') > 0")[0][0]
    assert rows(old, "SELECT count(*) FROM pq_failed")[0][0] == 1
    assert rows(old, "SELECT message FROM pq_failed('queue')")[0][0] == "rotten Bramley"
    (failed_id,), = rows(old, "SELECT id FROM pq_failed")
    assert rows(old, "SELECT pq_requeue(%s)", failed_id)[0][0] is True
    assert rows(old, "SELECT outcome, sqlstate FROM pq_work('tasks')") == [("failed", "42501")]
    rows(old, "SELECT pq_register_task('rot(text)')")
    rows(old, "UPDATE queue SET enqueued_by = 'postgres' WHERE id = %s", failed_id)
    assert rows(old, "SELECT pq_requeue(%s)", failed_id)[0][0] is True
    assert rows(old, "SELECT outcome, sqlstate, message FROM pq_work('tasks')") == [("failed", "P0001", "rotten Bramley")]
    assert {r[0] for r in rows(old, "SELECT queue FROM pq_stats")} == {"apples", "pears", "tasks"}

    # The upgraded schema is the fresh install's.
    fresh = new_db()
    assert rows(old, SCHEMA) == rows(fresh, SCHEMA)
    old.close()
    fresh.close()
