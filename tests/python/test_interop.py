"""Python pq 1.9.1 and the pq extension on one table: both clients put and get, agree on
scheduling, wake each other, survive Python's create(), and share the task shape."""
import datetime
import os
import threading
import time

import psycopg2
import pytest
from conftest import connect


def test_pq_get_returns_what_python_put(pq, sql):
    pq["apples"].put({"kind": "Cox", "n": [1, 2.5, None, True]})
    rows = sql("SELECT data, size FROM pq_get('apples')")
    assert rows[0][0] == {"kind": "Cox", "n": [1, 2.5, None, True]}


def test_python_get_returns_what_pq_put(pq, sql):
    (job_id,), = sql("""SELECT pq_put('apples', '{"kind": "Cox"}')""")
    job = pq["apples"].get(block=False)
    assert (job.id, job.data) == (job_id, {"kind": "Cox"})
    assert job.size == len('{"kind": "Cox"}')
    assert sql("SELECT count(*) FROM pq_get('apples')")[0][0] == 0


def test_both_agree_a_job_scheduled_in_five_minutes_is_not_ready(pq, sql):
    pq["apples"].put({"from": "python"}, schedule_at="5m")
    sql("""SELECT pq_put('apples', '{"from": "sql"}', '5m')""")
    assert pq["apples"].get(block=False) is None
    assert sql("SELECT count(*) FROM pq_get('apples')")[0][0] == 0
    assert len(pq["apples"]) == 0 and sql("SELECT pq_len('apples')")[0][0] == 0
    sql("UPDATE queue SET schedule_at = now() - interval '1 second'")  # five minutes pass
    got = {pq["apples"].get(block=False).data["from"], sql("SELECT data->>'from' FROM pq_get('apples')")[0][0]}
    assert got == {"python", "sql"}


def test_which_job_is_next_agrees_and_differs_where_documented(pq, sql):
    # Plain FIFO and expected_at priority: the same for both.
    for n in (1, 2):
        sql("SELECT pq_put('fifo', jsonb_build_object('n', %s))", n)
    sql("""SELECT pq_put('fifo', '{"n": 0}', expected_at => '1m')""")
    assert pq["fifo"].get(block=False).data["n"] == 0
    assert sql("SELECT data->>'n' FROM pq_get('fifo')")[0][0] == "1"
    assert pq["fifo"].get(block=False).data["n"] == 2
    # The documented difference: a due scheduled job with an earlier expected_at. pq takes it
    # first (expected_at is the priority); Python pq takes unscheduled jobs first.
    for side in ("sql", "python"):
        sql("SELECT pq_put(%s, '{\"job\": \"plain\"}')", side)
        sql("SELECT pq_put(%s, '{\"job\": \"due, expected sooner\"}', now() - interval '1 minute', now() + interval '1 minute')", side)
    assert sql("SELECT data->>'job' FROM pq_get('sql')")[0][0] == "due, expected sooner"
    assert pq["python"].get(block=False).data["job"] == "plain"


def test_a_blocked_python_get_wakes_when_pq_put_commits(pq, db):
    result = {}

    def consumer():
        t0 = time.monotonic()
        job = pq["wake"].get(timeout=10)
        result["job"], result["waited"] = job, time.monotonic() - t0

    thread = threading.Thread(target=consumer)
    thread.start()
    time.sleep(0.5)
    producer = connect(db)
    with producer, producer.cursor() as cur:
        cur.execute("""SELECT pq_put('wake', '{"kind": "Cox"}')""")
        put_at = time.monotonic()
    thread.join()
    assert result["job"].data == {"kind": "Cox"}
    # Woken by the NOTIFY, not by its 10 s timeout.
    assert result["waited"] < 5


def test_python_create_neither_fails_nor_breaks_the_extension(pq, sql, db):
    pq.create()  # drops and creates pq_notify(), adds its trigger and indexes
    pq.create()  # and again
    (job_id,), = sql("""SELECT pq_put('after', '{"n": 1}')""")
    assert sql("SELECT id FROM pq_get('after')")[0][0] == job_id
    pq["after"].put({"n": 2})
    assert sql("SELECT data->>'n' FROM pq_get('after')")[0][0] == "2"
    # pq_put's NOTIFY and the trigger's are one notification: duplicates fold at commit.
    listener = connect(db)
    listener.autocommit = True
    listener.cursor().execute("LISTEN dup")
    sql("""SELECT pq_put('dup', '{}')""")
    time.sleep(0.3)
    listener.poll()
    assert [n.channel for n in listener.notifies] == ["dup"]
    listener.close()
    # The extension's own objects are intact and it can still be dropped and recreated.
    assert sql("SELECT count(*) FROM pg_proc WHERE proname = 'pq_notify'")[0][0] == 1
    sql("SELECT * FROM pq_stats")
    sql("DROP EXTENSION pq")
    sql("CREATE EXTENSION pq")


eaten = []


def eat(job_id, kind, colour="green"):
    eaten.append((job_id, kind, colour))


def rot(job_id, kind):
    raise ValueError(f"the {kind} is rotten")


def test_a_task_enqueued_by_sql_is_performed_by_python_work(db, sql):
    from pq.tasks import PQ
    conn = connect(db)
    queue = PQ(conn, table="queue")["py_tasks"]
    queue.handler_registry["interop.eat"] = eat
    (job_id,), = sql("""SELECT pq_put_task('py_tasks', 'interop.eat', '["Cox"]', '{"colour": "red"}', external => true)""")
    queue.work(burst=True)
    assert (job_id, "Cox", "red") in eaten
    conn.close()


def test_retries_agree(db, sql):
    from pq.tasks import PQ
    conn = connect(db)
    queue = PQ(conn, table="queue")["py_retry"]
    queue.handler_registry["interop.rot"] = rot
    (job_id,), = sql("""SELECT pq_put_task('py_retry', 'interop.rot', '["Bramley"]', max_retries => 1, retry_in => '30s', external => true)""")
    queue.work(burst=True)
    # Python reschedules as a new job with retried + 1, due retry_in later: the same fields,
    # read the same way, as pq_work's retry (which keeps the id).
    rows = sql("""SELECT id, (data->>'retried')::int, schedule_at > now() + interval '25 seconds', dequeued_at IS NULL
                  FROM queue WHERE q_name = 'py_retry' ORDER BY id""")
    assert rows[0][0] == job_id and rows[0][3] is False
    assert rows[1][1:] == (1, True, True)
    conn.close()


def test_python_tasks_are_left_alone_by_pq_work(db, sql):
    from pq.tasks import PQ
    conn = connect(db)
    queue = PQ(conn, table="queue")["mixed"]

    @queue.task(max_retries=2)
    def chew(job_id, kind):
        pass

    chew("Cox")
    shape = sql("SELECT data FROM queue WHERE q_name = 'mixed'")[0][0]
    assert set(shape) == {"function", "args", "kwargs", "retried", "retry_in", "max_retries"}
    assert sql("SELECT count(*) FROM pq_work('mixed')")[0][0] == 0
    assert sql("SELECT pq_len('mixed')")[0][0] == 1
    conn.close()


def test_python_put_of_task_data_runs_only_registered_tasks_as_the_putter(db, sql):
    """Python pq's put writes task-shaped JSON with a plain INSERT: the extension stamps the
    connection's role as the enqueuer, runs only registered functions, and only those that role
    may execute, as that role."""
    import uuid
    from pq import PQ
    role = "py_producer_" + uuid.uuid4().hex[:6]
    sql(f"CREATE ROLE {role} LOGIN")
    sql(f"GRANT INSERT, SELECT ON queue TO {role}; GRANT USAGE ON SEQUENCE queue_id_seq TO {role}")
    sql("CREATE TABLE log (what text, who text)")
    sql(f"GRANT INSERT ON log TO {role}")
    for name in ("ok", "private", "unregistered"):
        sql(f"CREATE FUNCTION {name}(x text) RETURNS void LANGUAGE sql "
            f"AS $$ INSERT INTO public.log VALUES ('{name} ' || x, current_user) $$")
    sql("REVOKE EXECUTE ON FUNCTION private(text) FROM PUBLIC")
    sql("SELECT pq_register_task('ok(text)'), pq_register_task('private(text)')")
    conn = psycopg2.connect(dbname=db, host=os.environ["PGHOST"], port=os.environ["PGPORT"], user=role)
    queue = PQ(conn, table="queue")["py_put_tasks"]
    for function in ("public.unregistered(text)", "public.private(text)", "public.ok(text)"):
        queue.put({"function": function, "args": ["py"], "kwargs": {}, "retried": 0,
                   "max_retries": 0, "retry_in": "30s"})
    conn.close()
    assert sql("SELECT DISTINCT enqueued_by::text FROM queue WHERE q_name = 'py_put_tasks'") == [(role,)]
    outcomes = sql("SELECT outcome, sqlstate FROM pq_work('py_put_tasks') ORDER BY id")
    assert outcomes == [("failed", "42501"), ("failed", "42501"), ("done", None)]
    assert sql("SELECT what, who FROM log") == [("ok py", role)]
