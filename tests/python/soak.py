"""Soak: producers and consumers on one queue with random consumer rollbacks and random
backend kills; at the end every job was consumed exactly once, as the ledger the consumers
write in the claiming transaction shows.

    python tests/python/soak.py --jobs 1000000 --producers 8 --consumers 8   (scripts/soak)

test_faults.py runs a short version in the test command.
"""
import argparse
import os
import random
import threading
import time

import psycopg2

QUEUE = "soak"


def connect():
    return psycopg2.connect(host=os.environ["PGHOST"], port=os.environ["PGPORT"],
                            user=os.environ.get("PGUSER", "postgres"), dbname=os.environ.get("PGDATABASE", "postgres"))


def soak(jobs, producers=8, consumers=8, rollback_rate=0.05, kill_every=0.5, batch=100, log=print):
    admin = connect()
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS pq")
    cur.execute("DROP TABLE IF EXISTS soak_ledger")
    cur.execute("CREATE TABLE soak_ledger (job_id bigint PRIMARY KEY, consumer int NOT NULL)")
    cur.execute("SELECT pq_clear(%s)", (QUEUE,))

    put_ids, lock = [], threading.Lock()
    done_producing = threading.Event()
    stats = {"rollbacks": 0, "kills": 0, "reconnects": 0, "duplicates": 0}
    pids = {}

    def producer(n):
        conn = connect()
        conn.autocommit = True
        c = conn.cursor()
        left = n
        while left > 0:
            k = min(batch, left)
            c.execute("SELECT * FROM pq_put_many(%s, (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, %s) i))", (QUEUE, k))
            ids = [r[0] for r in c.fetchall()]
            with lock:
                put_ids.extend(ids)
            left -= k
        conn.close()

    def consumer(k):
        rnd = random.Random(k)
        conn = None
        while True:
            try:
                if conn is None or conn.closed:
                    conn = connect()
                    c = conn.cursor()
                    c.execute("SELECT pg_backend_pid()")
                    pids[k] = c.fetchone()[0]
                    conn.commit()
                c = conn.cursor()
                c.execute("SELECT id FROM pq_get(%s, '200ms')", (QUEUE,))
                row = c.fetchone()
                if row is None:
                    conn.commit()
                    if done_producing.is_set():
                        c.execute("SELECT count(*) FROM queue WHERE q_name = %s AND dequeued_at IS NULL", (QUEUE,))
                        left = c.fetchone()[0]
                        conn.commit()
                        if left == 0:
                            break
                    continue
                c.execute("INSERT INTO soak_ledger VALUES (%s, %s)", (row[0], k))
                if rnd.random() < rollback_rate:
                    conn.rollback()
                    stats["rollbacks"] += 1
                else:
                    conn.commit()
            except psycopg2.errors.UniqueViolation:
                stats["duplicates"] += 1
                conn.rollback()
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                stats["reconnects"] += 1
                conn = None
        conn.close()

    def chaos():
        killer = connect()
        killer.autocommit = True
        rnd = random.Random(99)
        while not stop_chaos.is_set():
            time.sleep(kill_every)
            if pids:
                pid = rnd.choice(list(pids.values()))
                killer.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
                stats["kills"] += 1
        killer.close()

    stop_chaos = threading.Event()
    t0 = time.time()
    ps = [threading.Thread(target=producer, args=(jobs // producers + (1 if i < jobs % producers else 0),)) for i in range(producers)]
    cs = [threading.Thread(target=consumer, args=(k,)) for k in range(consumers)]
    ch = threading.Thread(target=chaos)
    for t in ps + cs + [ch]:
        t.start()
    for t in ps:
        t.join()
    done_producing.set()
    for t in cs:
        t.join()
    stop_chaos.set()
    ch.join()

    cur.execute("SELECT count(*), count(DISTINCT job_id) FROM soak_ledger")
    ledger_rows, ledger_distinct = cur.fetchone()
    cur.execute("SELECT count(*) FROM queue WHERE q_name = %s AND dequeued_at IS NULL", (QUEUE,))
    pending = cur.fetchone()[0]
    cur.execute("SELECT count(*) FROM soak_ledger l LEFT JOIN queue q ON q.id = l.job_id WHERE q.id IS NULL OR q.dequeued_at IS NULL")
    orphans = cur.fetchone()[0]
    cur.execute("SELECT array_agg(job_id) FROM soak_ledger")
    ledger_ids = set(cur.fetchone()[0] or [])
    admin.close()
    result = dict(jobs=len(put_ids), ledger=ledger_rows, secs=round(time.time() - t0, 1), pending=pending,
                  lost=len(set(put_ids) - ledger_ids), orphans=orphans, **stats)
    log(result)
    assert len(put_ids) == jobs, "every put was acknowledged"
    assert ledger_rows == ledger_distinct == jobs, f"each job consumed exactly once: {result}"
    assert ledger_ids == set(put_ids) and pending == 0 and orphans == 0 and stats["duplicates"] == 0, result
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--producers", type=int, default=8)
    p.add_argument("--consumers", type=int, default=8)
    a = p.parse_args()
    soak(a.jobs, a.producers, a.consumers)
