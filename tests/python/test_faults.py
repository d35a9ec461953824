"""Faults, with a real cluster: killed backends, an immediate shutdown in the middle of
concurrent puts and gets, and a short soak. scripts/test points PQ_FAULT_PGDATA at the data
directory of the throwaway cluster it started, which these tests crash and restart."""
import os
import signal
import subprocess
import threading
import time

import psycopg2
import pytest

from soak import connect, soak

PGDATA = os.environ.get("PQ_FAULT_PGDATA")
PG_CTL = os.path.join(os.environ.get("PQ_PG_BIN", "/usr/lib/postgresql/15/bin"), "pg_ctl")
needs_cluster = pytest.mark.skipif(not PGDATA, reason="scripts/test sets PQ_FAULT_PGDATA")


def sql(statement, *args):
    conn = connect()
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(statement, args)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def wait_until_up(timeout=60):
    deadline = time.time() + timeout
    while True:
        try:
            return sql("SELECT 1")
        except psycopg2.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def claim_and_hold(queue):
    """A connection holding a claimed job in an open transaction."""
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT id FROM pq_get(%s)", (queue,))
    job = cur.fetchone()[0]
    cur.execute("SELECT pg_backend_pid()")
    return conn, job, cur.fetchone()[0]


@needs_cluster
def test_terminated_backend_returns_its_job():
    sql("CREATE EXTENSION IF NOT EXISTS pq")
    ids = [r[0] for r in sql("SELECT * FROM pq_put_many('f_term', ARRAY['{}', '{}']::jsonb[])")]
    conn, job, pid = claim_and_hold("f_term")
    assert sql("SELECT count(*) FROM pq_get('f_term')")[0][0] == 1  # the other job
    sql("SELECT pg_terminate_backend(%s)", pid)
    assert sql("SELECT id FROM pq_get('f_term')")[0][0] == job == ids[0]
    assert sql("SELECT count(*) FROM queue WHERE q_name = 'f_term'")[0][0] == 2


@needs_cluster
def test_kill_9_of_a_backend_returns_its_job():
    sql("CREATE EXTENSION IF NOT EXISTS pq")
    sql("SELECT pq_put('f_kill', '{}'); SELECT pq_put('f_kill', '{}')")
    conn, job, pid = claim_and_hold("f_kill")
    os.kill(pid, signal.SIGKILL)  # the postmaster resets every backend and recovers
    time.sleep(1)
    wait_until_up()
    assert sql("SELECT count(*) FROM queue WHERE q_name = 'f_kill'")[0][0] == 2
    assert sql("SELECT id FROM pq_get('f_kill')")[0][0] == job


@needs_cluster
def test_immediate_shutdown_loses_no_acknowledged_put_or_get():
    sql("CREATE EXTENSION IF NOT EXISTS pq")
    sql("SELECT * FROM pq_put_many('f_crash', (SELECT array_agg('{}'::jsonb) FROM generate_series(1, 2000)))")
    put_acked, got_acked, stop = [], [], threading.Event()

    def producer():
        try:
            conn = connect()
            conn.autocommit = True
            while not stop.is_set():
                cur = conn.cursor()
                cur.execute("SELECT pq_put('f_crash', '{}')")
                put_acked.append(cur.fetchone()[0])  # returned after the commit
        except psycopg2.Error:
            pass

    def consumer():
        try:
            conn = connect()
            conn.autocommit = True
            while not stop.is_set():
                cur = conn.cursor()
                cur.execute("SELECT id FROM pq_get('f_crash')")
                row = cur.fetchone()
                if row:
                    got_acked.append(row[0])
        except psycopg2.Error:
            pass

    threads = [threading.Thread(target=f) for f in (producer, producer, consumer, consumer)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    # -l: the restarted postmaster must not hold our pipes open (run() would wait for EOF).
    log = os.path.join(os.path.dirname(PGDATA), "log")
    subprocess.run(["runuser", "-u", "postgres", "--", PG_CTL, "-D", PGDATA, "-l", log, "-m", "immediate", "restart"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop.set()
    for t in threads:
        t.join()
    wait_until_up()
    assert put_acked and got_acked, "the crash came while both were running"
    present = {r[0] for r in sql("SELECT id FROM queue WHERE q_name = 'f_crash'")}
    consumed = {r[0] for r in sql("SELECT id FROM queue WHERE q_name = 'f_crash' AND dequeued_at IS NOT NULL")}
    assert set(put_acked) <= present, "an acknowledged put was lost"
    assert set(got_acked) <= consumed, "an acknowledged get came back"
    assert len(got_acked) == len(set(got_acked)), "a job was got twice"


@needs_cluster
def test_short_soak_consumes_every_job_exactly_once():
    wait_until_up()
    soak(jobs=20_000, producers=8, consumers=8, kill_every=0.3)


def restart(**settings):
    """Restarts the cluster with these settings, or with none: a file postgresql.conf includes
    (ALTER SYSTEM refuses pq.* settings while the library is not preloaded)."""
    conf = os.path.join(PGDATA, "postgresql.conf")
    with open(conf) as f:
        included = "include_if_exists 'pq_faults.conf'" in f.read()
    if not included:
        with open(conf, "a") as f:
            f.write("\ninclude_if_exists 'pq_faults.conf'\n")
    with open(os.path.join(PGDATA, "pq_faults.conf"), "w") as f:
        f.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
    log = os.path.join(os.path.dirname(PGDATA), "log")
    subprocess.run(["runuser", "-u", "postgres", "--", PG_CTL, "-D", PGDATA, "-l", log, "-w", "restart"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_up()


def workers(queue):
    return sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", f"pq worker {queue}")[0][0]


@needs_cluster
def test_background_workers_refuse_a_superuser_and_stop_fast_mid_task():
    sql("CREATE EXTENSION IF NOT EXISTS pq")
    sql("""DO $$ BEGIN CREATE ROLE f_worker LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
           GRANT SELECT, UPDATE ON queue TO f_worker;
           CREATE OR REPLACE FUNCTION f_nap(s float8) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(s) $$;
           SELECT pq_register_task('f_nap(float8)')""")
    base = dict(shared_preload_libraries="pq", **{"pq.worker_queues": "f_stop", "pq.worker_database": "postgres"})
    try:
        # A superuser worker role is refused unless explicitly allowed.
        restart(**base, **{"pq.worker_role": "postgres"})
        time.sleep(2)
        assert workers("f_stop") == 0
        with open(os.path.join(os.path.dirname(PGDATA), "log")) as f:
            assert "is a superuser" in f.read()
        restart(**base, **{"pq.worker_role": "postgres", "pq.worker_allow_superuser": "on"})
        deadline = time.time() + 10
        while workers("f_stop") != 1:
            assert time.time() < deadline, "the allowed superuser worker did not start"
            time.sleep(0.2)

        # A plain role works; a fast shutdown cancels its running task, whose job returns.
        restart(**base, **{"pq.worker_role": "f_worker"})
        job = sql("SELECT pq_put_task('f_stop', 'f_nap(float8)', '[600]')")[0][0]
        deadline = time.time() + 20
        while not sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pq worker f_stop' "
                      "AND wait_event = 'PgSleep'")[0][0]:
            assert time.time() < deadline, "the worker never started the task"
            time.sleep(0.2)
        log = os.path.join(os.path.dirname(PGDATA), "log")
        t0 = time.time()
        subprocess.run(["runuser", "-u", "postgres", "--", PG_CTL, "-D", PGDATA, "-l", log, "-m", "fast", "-w",
                        "-t", "30", "stop"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert time.time() - t0 < 10, "a running task held up pg_ctl stop -m fast"
        # restart, not start: it starts a stopped server with the options it was started with.
        subprocess.run(["runuser", "-u", "postgres", "--", PG_CTL, "-D", PGDATA, "-l", log, "-w", "restart"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_up()
        assert sql("SELECT dequeued_at IS NULL FROM queue WHERE id = %s", job)[0][0]
    finally:
        restart()
        sql("SELECT pq_clear('f_stop')")
