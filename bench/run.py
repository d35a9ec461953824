"""The benchmark suite: pq side by side with a raw INSERT, a hand-written SKIP LOCKED claim and
Python pq 1.9.1, on one throwaway cluster, in one run. Started by scripts/bench, which sets
PGHOST/PGPORT/PGUSER/PGDATABASE. Prints a table and writes bench/results.md and
bench/throughput.png. Measures; asserts nothing about speed.

    python bench/run.py [--smoke]     # --smoke: every scenario at a tiny size
    python bench/run.py --paired-puts # only pq_put vs raw INSERT, sync on, paired runs
"""
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SMOKE = "--smoke" in sys.argv
# Smoke runs (the test command's) write under target/, so tests leave the tree clean; real
# runs write bench/results.md and bench/throughput.png, which are committed.
OUT = os.path.join(os.path.dirname(HERE), "target", "bench-smoke") if SMOKE else HERE
os.makedirs(OUT, exist_ok=True)
PGBENCH = os.path.join(os.environ.get("PQ_PG_BIN", "/usr/lib/postgresql/15/bin"), "pgbench")
RUST_BENCH = os.environ.get("PQ_RUST_BENCH", os.path.join(ROOT, "target/release/examples/bench"))
URL = "host={PGHOST} port={PGPORT} user={PGUSER} dbname={PGDATABASE}".format(**os.environ)
SECONDS = 1 if SMOKE else 5          # duration of each timed pgbench run
OPS = 200 if SMOKE else 4000         # per-client operations for count-based runs
REPEAT = 1 if SMOKE else 3           # repeats per measurement; the median is reported
CLIENTS = (1, 4)


def sql(statement, *args):
    conn = psycopg2.connect(URL)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(statement, args)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def set_sync(on):
    conn = psycopg2.connect(URL)
    conn.autocommit = True
    conn.cursor().execute("ALTER SYSTEM SET synchronous_commit = %s", ("on" if on else "off",))
    conn.cursor().execute("SELECT pg_reload_conf()")
    conn.close()
    time.sleep(0.2)


def setup():
    conn = psycopg2.connect(URL)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS pq")
    # The raw baseline: the same layout, with the index the hand-written claim wants.
    cur.execute("""
        CREATE TABLE IF NOT EXISTS raw_queue (
            id bigserial PRIMARY KEY, enqueued_at timestamptz NOT NULL DEFAULT now(),
            dequeued_at timestamptz, expected_at timestamptz, schedule_at timestamptz,
            q_name text NOT NULL CHECK (length(q_name) > 0), data jsonb NOT NULL);
        CREATE INDEX IF NOT EXISTS raw_queue_claim_idx ON raw_queue (q_name, expected_at NULLS LAST, id)
            WHERE dequeued_at IS NULL""")
    conn.close()
    from pq import PQ
    PQ(psycopg2.connect(URL), table="py_queue").create()


def reset(table="queue"):
    sql(f"TRUNCATE {table}")
    sql(f"VACUUM ANALYZE {table}")


def fill(queue, n, table="queue"):
    """n ready jobs, inserted in bulk (not what is measured)."""
    if table == "py_queue":
        sql("INSERT INTO py_queue (q_name, data) SELECT %s, '{\"kind\":\"Cox\"}'::json FROM generate_series(1, %s)", queue, n)
    else:
        sql(f"INSERT INTO {table} (q_name, data) SELECT %s, '{{\"kind\":\"Cox\"}}'::jsonb FROM generate_series(1, %s)", queue, n)
    sql(f"VACUUM ANALYZE {table}")


# Scripts made from the others for another queue: (source scripts, queue name).
DERIVED = {
    "pq_get_big.sql": (["pq_get.sql"], "big"),
    "skip_locked_get_big.sql": (["skip_locked_get.sql"], "big"),
    "churn_pq.sql": (["pq_put.sql", "pq_get.sql"], "churn"),
    "churn_raw.sql": (["raw_insert.sql", "skip_locked_get.sql"], "churn"),
}


def script_path(script):
    """The path of a pgbench script: bench/NAME, or one DERIVED from them under target/."""
    if script not in DERIVED:
        return os.path.join(HERE, script)
    sources, queue = DERIVED[script]
    text = "".join(open(os.path.join(HERE, s)).read().replace("'bench'", f"'{queue}'") for s in sources)
    path = os.path.join(ROOT, "target", "bench-scripts", script)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def pgbench(script, clients, transactions=None, protocol="simple"):
    return pgbench_env(script, clients, transactions, protocol=protocol)


def _py_worker(args):
    op, n, barrier = args
    from pq import PQ
    conn = psycopg2.connect(URL)
    queue = PQ(conn, table="py_queue")["bench"]
    barrier.wait()
    for i in range(n):
        if op == "put":
            queue.put({"kind": "Cox"})
        else:
            assert queue.get(block=False) is not None
    conn.close()


def python_pq(op, clients, n):
    with mp.Manager() as m:
        barrier = m.Barrier(clients + 1)
        with mp.Pool(clients) as pool:
            result = pool.map_async(_py_worker, [(op, n, barrier)] * clients)
            barrier.wait()
            t0 = time.perf_counter()
            result.get()
            return clients * n / (time.perf_counter() - t0)


def rust(op, clients, n):
    out = subprocess.run([RUST_BENCH, op, URL, "bench", str(clients), str(n)], capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    return r["ops"] / r["secs"]


def compare(impls):
    """Runs each implementation REPEAT times, interleaved round-robin so that drifts of a noisy
    machine hit all alike; returns the median of each. impls: {name: (run, prepare)}."""
    values = {name: [] for name in impls}
    for _ in range(REPEAT):
        for name, (run, prepare) in impls.items():
            if prepare:
                prepare()
            values[name].append(run())
    return {name: statistics.median(v) for name, v in values.items()}


PAIRED_ROUNDS = 1 if SMOKE else 10   # rounds of the paired put comparison (sync on)
PAIRED_SECONDS = 1 if SMOKE else 3


def paired(a, b, rounds=PAIRED_ROUNDS):
    """The ratio a/b of two runs made back to back, `rounds` times, in the order ABBA BAAB...
    so that a drift in the machine (with synchronous_commit on, the disk's flush latency moves
    by 10-20 % from one minute to the next) hits both sides alike. Returns (median ratio, every
    ratio, median of a, median of b). a, b: (run, prepare)."""
    ratios, xs, ys = [], [], []
    for k in range(rounds):
        order = (a, b) if k % 2 == 0 else (b, a)
        values = {}
        for run, prepare in order:
            prepare()
            values[id(run)] = run()
        x, y = values[id(a[0])], values[id(b[0])]
        xs.append(x)
        ys.append(y)
        ratios.append(x / y)
    return statistics.median(ratios), ratios, statistics.median(xs), statistics.median(ys)


def paired_puts(clients):
    """pq_put against a raw INSERT with synchronous_commit on, in both protocols, as paired
    ratios (see `paired`): each put waits for its WAL flush, whose latency drifts more than the
    two sides differ, so the ratio of two medians taken minutes apart says little. Fills PAIRED."""
    for protocol in ("simple", "prepared"):
        ratio, each, x, y = paired(
            (lambda: pgbench_env("pq_put.sql", clients, protocol=protocol, seconds=PAIRED_SECONDS), lambda: reset()),
            (lambda: pgbench_env("raw_insert.sql", clients, protocol=protocol, seconds=PAIRED_SECONDS), lambda: reset("raw_queue")))
        line = (f"paired put ({protocol}, sync on) c={clients}: pq_put {x:,.0f}/s, raw INSERT {y:,.0f}/s; "
                f"ratio median {ratio:.3f} of {', '.join(f'{r:.2f}' for r in each)}")
        print("  " + line, flush=True)
        PAIRED_LINES.append(line)
        PAIRED[(protocol, clients)] = (ratio, min(each), max(each), len(each))


def pgbench_env(script, clients, transactions=None, protocol="simple", seconds=SECONDS, **settings):
    """pgbench with session settings (e.g. pq.notify=off) passed as startup options; protocol
    "prepared" is what drivers use (parse and plan once per connection)."""
    env = dict(os.environ, PGOPTIONS=" ".join(f"-c {k.replace('_', '.', 1)}={v}" for k, v in settings.items()))
    cmd = [PGBENCH, "-n", "-M", protocol, "-f", script_path(script), "-c", str(clients), "-j", str(clients)]
    cmd += ["-t", str(transactions)] if transactions else ["-T", str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out).group(1))


PAIRED = {}  # (protocol, clients): (median ratio, lowest, highest, rounds) of pq_put / raw INSERT, sync on
PAIRED_LINES = []  # the same, as printed

PGMQ = None  # PGMQ's version once bench/pgmq_peer.py installed it (main)


def pgmq_impls(op, clients, fill_n=0):
    """PGMQ (its pure-SQL install, fetched by bench/pgmq_peer.py) as a peer row: send, and
    read with a visibility timeout + delete in one transaction (its claim-and-consume)."""
    if not PGMQ:
        return {}
    import pgmq_peer
    if op == "put":
        return {f"PGMQ {PGMQ} send": (lambda: pgbench("pgmq_send.sql", clients), lambda: pgmq_peer.reset(sql))}
    n = (fill_n - 10) // clients
    return {f"PGMQ {PGMQ} read+delete": (lambda: pgbench("pgmq_read.sql", clients, n),
                                         lambda: (pgmq_peer.reset(sql), pgmq_peer.fill(sql, fill_n)))}


def pgbench_series(script, clients, seconds, every):
    """tps per `every`-second interval of one pgbench run (its progress report)."""
    cmd = [PGBENCH, "-n", "-f", script_path(script), "-c", str(clients), "-j", str(clients),
           "-T", str(seconds), "-P", str(every)]
    err = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    return [float(x) for x in re.findall(r"progress: [0-9.]+ s, ([0-9.]+) tps", err)]


HELD_SECONDS = 6 if SMOKE else 60
HELD_EVERY = 2 if SMOKE else 5


def held_snapshot():
    """A 4-client put+get churn, clean and with another session idle in a REPEATABLE READ
    transaction (which keeps VACUUM from removing what the churn consumes), pq and raw SQL:
    tps per interval, for the curve. Returns {(impl, held): [tps...]}."""
    series = {}
    for impl, script, table in (("pq", "churn_pq.sql", "queue"), ("SKIP LOCKED CTE", "churn_raw.sql", "raw_queue")):
        for held in (False, True):
            reset(table)
            fill("churn", 1000, table)
            holder = None
            if held:
                holder = psycopg2.connect(URL)
                holder.set_session(isolation_level="REPEATABLE READ")
                holder.cursor().execute("SELECT count(*) FROM pg_class")  # takes the snapshot
            try:
                series[(impl, held)] = pgbench_series(script, 4, HELD_SECONDS, HELD_EVERY)
            finally:
                if holder:
                    holder.rollback()
                    holder.close()
            print(f"  churn {impl:<16} held={held!s:<5} tps per {HELD_EVERY}s: {[round(x) for x in series[(impl, held)]]}", flush=True)
    return series


BIG = 100_000  # bytes of payload


def big_payloads(record):
    """get with 100 KB payloads (incompressible hex, so TOASTed): pq_get vs the hand-written
    claim returning the same columns."""
    n = 50 if SMOKE else 500
    for c in CLIENTS:
        def fill_big(table):
            reset(table)
            sql(f"INSERT INTO {table} (q_name, data) SELECT 'big', jsonb_build_object('blob', "
                f"(SELECT string_agg(md5(random()::text || g::text || k::text), '') FROM generate_series(1, {BIG // 32}) k)) "
                f"FROM generate_series(1, %s) g", c * n + 10)
            sql(f"VACUUM ANALYZE {table}")
        runs = compare({
            "pq_get": (lambda: pgbench("pq_get_big.sql", c, n), lambda: fill_big("queue")),
            "SKIP LOCKED CTE": (lambda: pgbench("skip_locked_get_big.sql", c, n), lambda: fill_big("raw_queue")),
        })
        for impl, v in runs.items():
            record("get, 100 KB payloads", impl, c, False, v)


def cpu_seconds(pid):
    """CPU time of process `pid` (single-threaded, as backends are), in seconds: the
    scheduler's own count (/proc/PID/schedstat, nanoseconds), which is exact; the tick-sampled
    user + system times of /proc/PID/stat, its fallback (kernels without schedstats print 0),
    put anything from 0 % to 5 % of a core on the same 200 idle waiters."""
    try:
        ns = int(open(f"/proc/{pid}/schedstat").read().split()[0])
        if ns > 0:
            return ns / 1e9
    except (OSError, IndexError, ValueError):
        pass
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def cpu_used(pids):
    """CPU seconds used so far by processes `pids` (those still running)."""
    return sum(cpu_seconds(pid) for pid in pids)


def reaped_seconds():
    """CPU time of the postgres user's processes that have exited and been reaped by their
    parent (the postmaster: autovacuum workers, ended backends), from the parents' cutime +
    cstime; tick-sampled, the only count the kernel keeps of them."""
    total = 0.0
    for pid in postgres_pids():
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            pass
    return total


def postgres_pids():
    """Every process of the cluster's user (postgres)."""
    pids = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid == PG_UID:
                pids.append(pid)
        except OSError:
            pass
    return pids


try:
    import pwd
    PG_UID = pwd.getpwnam("postgres").pw_uid
except KeyError:
    PG_UID = -1


def idle_waiters(waiters):
    """CPU used while `waiters` sessions are blocked in pq_get on a quiet queue, as a
    percentage of one core over a 10 s window: (the waiting backends themselves, the whole
    cluster). The cluster's share includes background work left by earlier scenarios
    (autovacuum, also workers that ended within the window), which is not the waiters'."""
    import threading
    reset()
    conns = [psycopg2.connect(URL) for _ in range(waiters)]
    pids = [c.get_backend_pid() for c in conns]
    window = 3 if SMOKE else 10

    def wait(conn):
        try:
            conn.cursor().execute("SELECT * FROM pq_get('idle', %s::interval)", (f"{window + 30} seconds",))
        except psycopg2.Error:
            pass

    threads = [threading.Thread(target=wait, args=(c,), daemon=True) for c in conns]
    for t in threads:
        t.start()
    time.sleep(3)
    # The cluster: its processes at either end (one started meanwhile counts from zero),
    # and those that ended meanwhile (reaped by the postmaster).
    t0, w0 = time.monotonic(), cpu_used(pids)
    before, reaped = {pid: cpu_seconds(pid) for pid in postgres_pids()}, reaped_seconds()
    time.sleep(window)
    t1, w1 = time.monotonic(), cpu_used(pids)
    c1 = sum(max(0.0, cpu_seconds(pid) - before.get(pid, 0.0)) for pid in postgres_pids())
    c1 += max(0.0, reaped_seconds() - reaped)
    c0 = 0.0
    sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Extension' OR wait_event LIKE 'PqQueue%%'")
    for t in threads:
        t.join(timeout=10)
    for c in conns:
        c.close()
    share = lambda seconds: 100.0 * seconds / (t1 - t0)
    return share(w1 - w0), share(c1 - c0)


SUSTAINED_SECONDS = 2 if SMOKE else 10
SUSTAINED_BACKLOG = 20_000 if SMOKE else 200_000


def sustained(record):
    """Claims held up for SUSTAINED_SECONDS from a big backlog: what a busy queue sees, where
    the short drains above end after a second or two. Every claim leaves a dead index entry at
    the front of the queue until VACUUM; a hand-written claim walks them all from the start."""
    for c in CLIENTS:
        filled = lambda table="queue": (reset(table), fill("bench", SUSTAINED_BACKLOG, table))
        runs = compare({
            "pq_get": (lambda: pgbench_env("pq_get.sql", c, seconds=SUSTAINED_SECONDS), filled),
            "SKIP LOCKED CTE": (lambda: pgbench_env("skip_locked_get.sql", c, seconds=SUSTAINED_SECONDS), lambda: filled("raw_queue")),
            "pq_get, prepared": (lambda: pgbench_env("pq_get.sql", c, protocol="prepared", seconds=SUSTAINED_SECONDS), filled),
            "SKIP LOCKED CTE, prepared": (lambda: pgbench_env("skip_locked_get.sql", c, protocol="prepared", seconds=SUSTAINED_SECONDS), lambda: filled("raw_queue")),
        })
        for impl, v in runs.items():
            record(SUSTAINED, impl, c, False, v)


SUSTAINED = f"get, sustained {SUSTAINED_SECONDS} s"


def main():
    global PGMQ
    setup()
    if "--paired-puts" in sys.argv:  # only the sync-on put pairs (a few minutes)
        set_sync(True)
        for c in CLIENTS:
            paired_puts(c)
        set_sync(False)
        version = sql("SHOW server_version")[0][0]
        text = "\n".join([
            f"Machine: {os.cpu_count()} cores; PostgreSQL {version}; pq_put vs raw INSERT, synchronous_commit = on,"
            f" {PAIRED_ROUNDS} pairs of {PAIRED_SECONDS} s runs (ABBA), median of the pair ratios.", ""]
            + [f"- {line}" for line in PAIRED_LINES])
        with open(os.path.join(OUT, "paired-puts-smoke.md" if SMOKE else "paired-puts.md"), "w") as f:
            f.write(text + "\n")
        return
    try:
        sys.path.insert(0, HERE)
        import pgmq_peer
        PGMQ = pgmq_peer.install(sql)
    except Exception as e:  # no registry access: the other rows still run
        print(f"  PGMQ not installed ({e}); its rows are left out", flush=True)
    rows = []  # (scenario, implementation, clients, sync, ops/s)

    def record(scenario, impl, clients, sync, value):
        rows.append((scenario, impl, clients, sync, value))
        print(f"  {scenario:<28} {impl:<30} c={clients} sync={'on' if sync else 'off':<3} {value:>12,.0f}/s", flush=True)

    for sync in (True, False):
        set_sync(sync)
        for c in CLIENTS:
            n = OPS // c * (1 if sync else 2)
            filled = lambda table="queue": (reset(table), fill("bench", c * n + 10, table))
            puts = compare({
                "pq_put": (lambda: pgbench("pq_put.sql", c), lambda: reset()),
                "pq_put, pq.notify=off": (lambda: pgbench_env("pq_put.sql", c, pq_notify="off"), lambda: reset()),
                "raw INSERT": (lambda: pgbench("raw_insert.sql", c), lambda: reset("raw_queue")),
                "pq_put, prepared": (lambda: pgbench("pq_put.sql", c, protocol="prepared"), lambda: reset()),
                "raw INSERT, prepared": (lambda: pgbench("raw_insert.sql", c, protocol="prepared"), lambda: reset("raw_queue")),
                **pgmq_impls("put", c),
                "Python pq put": (lambda: python_pq("put", c, n), lambda: reset("py_queue")),
                "client crate put": (lambda: rust("put", c, n), lambda: reset()),
            })
            for impl, v in puts.items():
                record("put", impl, c, sync, v)
            if sync:
                paired_puts(c)
            batch = compare({"pq_put_many x1000": (lambda: 1000 * pgbench("pq_put_many.sql", c), lambda: reset())})
            record("batch put (jobs)", "pq_put_many x1000", c, sync, batch["pq_put_many x1000"])
            gets = compare({
                "pq_get": (lambda: pgbench("pq_get.sql", c, n), filled),
                "SKIP LOCKED CTE": (lambda: pgbench("skip_locked_get.sql", c, n), lambda: filled("raw_queue")),
                "pq_get, prepared": (lambda: pgbench("pq_get.sql", c, n, protocol="prepared"), filled),
                "SKIP LOCKED CTE, prepared": (lambda: pgbench("skip_locked_get.sql", c, n, protocol="prepared"), lambda: filled("raw_queue")),
                **pgmq_impls("get", c, c * n + 10),
                "Python pq get": (lambda: python_pq("get", c, n), lambda: filled("py_queue")),
                "client crate get": (lambda: rust("get", c, n), filled),
            })
            for impl, v in gets.items():
                record("get", impl, c, sync, v)

        # History: get cost must not grow with dequeued or future jobs.
        history = 20_000 if SMOKE else 1_000_000
        scheduled = 2_000 if SMOKE else 100_000
        for c in CLIENTS:
            n = OPS // c * (1 if sync else 2)

            def dequeued_history():
                reset()
                sql("INSERT INTO queue (q_name, data, dequeued_at) SELECT 'bench', '{}', now() FROM generate_series(1, %s)", history)
                fill("bench", c * n + 10)

            def future_jobs():
                reset()
                sql("INSERT INTO queue (q_name, data, schedule_at) SELECT 'bench', '{}', now() + interval '1 day' FROM generate_series(1, %s)", scheduled)
                fill("bench", c * n + 10)

            history_runs = compare({
                "get, empty history": (lambda: pgbench("pq_get.sql", c, n), lambda: (reset(), fill("bench", c * n + 10))),
                f"get, {history:,} dequeued": (lambda: pgbench("pq_get.sql", c, n), dequeued_history),
                f"get, {scheduled:,} scheduled": (lambda: pgbench("pq_get.sql", c, n), future_jobs),
            })
            for scenario, v in history_runs.items():
                record(scenario, "pq_get", c, sync, v)

        reset()
        out = subprocess.run([RUST_BENCH, "latency", URL, "latency", "20" if SMOKE else "300"], capture_output=True, text=True, check=True).stdout
        lat = json.loads(out)
        print(f"  wake-up latency sync={'on' if sync else 'off'}: p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms", flush=True)
        rows.append(("wake-up latency p50 (ms)", "blocked pq_get", 1, sync, lat["p50_ms"]))
        rows.append(("wake-up latency p99 (ms)", "blocked pq_get", 1, sync, lat["p99_ms"]))

    set_sync(False)
    sustained(record)
    big_payloads(record)
    waiters = 20 if SMOKE else 200
    # Each window alone is at the mercy of autovacuum and the machine: the median of REPEAT.
    windows = [idle_waiters(waiters) for _ in range(REPEAT)]
    own = statistics.median(w for w, _ in windows)
    cluster = statistics.median(c for _, c in windows)
    print(f"  {waiters} idle blocked getters: {own:.1f} % of one core ({cluster:.1f} % for the whole cluster)", flush=True)
    rows.append((f"idle cost, {waiters} blocked getters (% of a core)", "blocked pq_get", waiters, False, own))
    rows.append((f"idle cost, {waiters} blocked getters, whole cluster (% of a core)", "blocked pq_get", waiters, False, cluster))
    reset()
    out = subprocess.run([RUST_BENCH, "herd", URL, "herd", "20" if SMOKE else "300", str(waiters)], capture_output=True, text=True, check=True).stdout
    herd = json.loads(out)
    print(f"  wake-up latency with {waiters} waiters: p50 {herd['p50_ms']:.2f} ms, p99 {herd['p99_ms']:.2f} ms", flush=True)
    rows.append((f"wake-up latency p50 (ms), {waiters} waiters", "blocked pq_get", waiters, False, herd["p50_ms"]))
    rows.append((f"wake-up latency p99 (ms), {waiters} waiters", "blocked pq_get", waiters, False, herd["p99_ms"]))
    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%%pq_get%%' AND pid <> pg_backend_pid()")
    series = held_snapshot()
    report(rows, series)


def report(rows, series):
    get = {(s, i, c, y): v for s, i, c, y, v in rows}
    settings = sql("SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers', 'fsync', 'max_connections', 'server_version')")
    lines = [
        f"Machine: {os.cpu_count()} cores; PostgreSQL {dict(settings).get('server_version')}; "
        + ", ".join(f"{k}={v}" for k, v in settings if k != "server_version")
        + f"; {REPEAT} runs per cell, median{' (smoke run: tiny sizes)' if SMOKE else ''}.",
        "",
        "| scenario | implementation | clients | sync commit | ops/s |",
        "|---|---|---:|---|---:|",
    ]
    for s, i, c, y, v in rows:
        lines.append(f"| {s} | {i} | {c} | {'on' if y else 'off'} | {v:,.2f} |" if "ms" in s else f"| {s} | {i} | {c} | {'on' if y else 'off'} | {v:,.0f} |")
    lines += ["", "Ratios, computed in this run (synchronous_commit = off):", "", "| ratio | 1 client | 4 clients | target |", "|---|---:|---:|---|"]

    def ratio(name, a, b, target, scen_a="put", scen_b="put"):
        cells = []
        for c in CLIENTS:
            x, y = get.get((scen_a, a, c, False)), get.get((scen_b, b, c, False))
            cells.append(f"{x / y:.2f}" if x and y else "n/a")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {target} |")

    ratio("pq_put / raw INSERT", "pq_put", "raw INSERT", ">= 0.8")
    ratio("pq_put (pq.notify=off) / raw INSERT", "pq_put, pq.notify=off", "raw INSERT", "(NOTIFY's share)")
    ratio("pq_put / Python pq put", "pq_put", "Python pq put", ">= 5")
    ratio("pq_get / SKIP LOCKED CTE", "pq_get", "SKIP LOCKED CTE", ">= 1 at 4 clients", "get", "get")
    ratio("pq_get / Python pq get", "pq_get", "Python pq get", ">= 5", "get", "get")
    hist = [s for s, *_ in rows if "dequeued" in s][0]
    sched = [s for s, *_ in rows if "scheduled" in s][0]
    ratio(f"{hist} / empty", "pq_get", "pq_get", ">= 0.8", hist, "get, empty history")
    ratio(f"{sched} / empty", "pq_get", "pq_get", ">= 0.8", sched, "get, empty history")
    ratio("pq_put, prepared / raw INSERT, prepared", "pq_put, prepared", "raw INSERT, prepared", ">= 0.95 (sync on: see above)")
    ratio("pq_get, prepared / SKIP LOCKED CTE, prepared", "pq_get, prepared", "SKIP LOCKED CTE, prepared", ">= 1.2", "get", "get")
    ratio(f"{SUSTAINED}: pq_get / SKIP LOCKED CTE", "pq_get", "SKIP LOCKED CTE", ">= 1.2", SUSTAINED, SUSTAINED)
    ratio(f"{SUSTAINED}: pq_get, prepared / SKIP LOCKED CTE, prepared", "pq_get, prepared", "SKIP LOCKED CTE, prepared", ">= 1.2", SUSTAINED, SUSTAINED)
    ratio("get, 100 KB payloads: pq_get / SKIP LOCKED CTE", "pq_get", "SKIP LOCKED CTE", ">= 0.9", "get, 100 KB payloads", "get, 100 KB payloads")
    batch = [get.get(("batch put (jobs)", "pq_put_many x1000", c, False), 0) for c in CLIENTS]
    lines.append(f"| batch put, jobs/s | {batch[0]:,.0f} | {batch[1]:,.0f} | >= 100,000 |")
    p99 = get.get(("wake-up latency p99 (ms)", "blocked pq_get", 1, False))
    lines.append(f"| wake-up latency p99, ms | {p99:.2f} | | < 10 |")
    lines += ["", "With synchronous_commit = on (the default), put:", "", "| ratio | 1 client | 4 clients | target |", "|---|---:|---:|---|"]

    def ratio_on(name, a, b, target):
        cells = []
        for c in CLIENTS:
            x, y = get.get(("put", a, c, True)), get.get(("put", b, c, True))
            cells.append(f"{x / y:.2f}" if x and y else "n/a")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {target} |")

    ratio_on("pq_put / raw INSERT (medians of 3 runs each)", "pq_put", "raw INSERT", "")
    ratio_on("pq_put, prepared / raw INSERT, prepared (medians of 3 runs each)", "pq_put, prepared", "raw INSERT, prepared", "")

    def ratio_paired(name, protocol):
        cells = []
        for c in CLIENTS:
            r = PAIRED.get((protocol, c))
            cells.append(f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f}, {r[3]} pairs)" if r else "n/a")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | >= 0.95 |")

    ratio_paired("pq_put / raw INSERT, paired back-to-back runs: median (range)", "simple")
    ratio_paired("pq_put, prepared / raw INSERT, prepared, paired back-to-back runs: median (range)", "prepared")
    for s_, i, c, y, v in rows:
        if s_.startswith("idle cost") or "waiters" in s_:
            target = "< 5" if s_.startswith("idle") and "whole cluster" not in s_ else "< 10" if "p99" in s_ else ""
            lines.append(f"| {s_} | {v:.2f} | | {target} |")
    lines += ["", f"Held snapshot: 4-client put+get churn (synchronous_commit = off), tps per {HELD_EVERY} s; "
              "'held': another session idle in a REPEATABLE READ transaction from the start:", "",
              "| implementation | held | " + " | ".join(f"{(k + 1) * HELD_EVERY} s" for k in range(max(len(v) for v in series.values()))) + " |",
              "|---|---|" + "---:|" * max(len(v) for v in series.values())]
    for (impl, held), v in series.items():
        lines.append(f"| {impl} | {'yes' if held else 'no'} | " + " | ".join(f"{x:,.0f}" for x in v) + " |")
    for impl in ("pq", "SKIP LOCKED CTE"):
        clean, held = series[(impl, False)], series[(impl, True)]
        if clean and held:
            lines.append(f"\n{impl}: last interval held / median clean = {held[-1] / statistics.median(clean):.2f} (target for pq: >= 0.5)")
    text = "\n".join(lines)
    print("\n" + text)
    with open(os.path.join(OUT, "results-smoke.md" if SMOKE else "results.md"), "w") as f:
        f.write(text + "\n")
    chart(rows)
    held_chart(series)


def held_chart(series):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (impl, held), v in series.items():
        ax.plot([(k + 1) * HELD_EVERY for k in range(len(v))], v, marker="o", linestyle="-" if held else "--",
                label=f"{impl}{', snapshot held' if held else ', clean'}")
    ax.set_xlabel("seconds since the churn (and the held snapshot) started")
    ax.set_ylabel("transactions per second (put or get)")
    ax.set_title("4-client put+get churn, with and without a held snapshot")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "held_snapshot-smoke.png" if SMOKE else "held_snapshot.png"), dpi=100)


def chart(rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, scen in zip(axes, ("put", "get")):
        impls = [i for s, i, c, y, v in rows if s == scen and c == 1 and not y]
        width = 0.8 / len(impls)
        for k, impl in enumerate(impls):
            vals = [next(v for s, i, cc, y, v in rows if s == scen and i == impl and cc == c and not y) for c in CLIENTS]
            ax.bar([x + k * width for x in range(len(CLIENTS))], vals, width, label=impl)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(CLIENTS))], [f"{c} client{'s' if c > 1 else ''}" for c in CLIENTS])
        ax.set_title(f"{scen}, one job per transaction (synchronous_commit=off)")
        ax.set_ylabel("jobs per second")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "throughput-smoke.png" if SMOKE else "throughput.png"), dpi=100)


if __name__ == "__main__":
    main()
