"""Bounded growth: a steady put+get churn for MINUTES (default 30) with finished jobs purged by
the maintenance worker (pq.retention), sampling the queue table's size every SAMPLE seconds.
Started by scripts/growth, which starts a preloaded cluster and sets PGHOST/PGPORT/PGUSER/
PGDATABASE. Prints a table, and writes bench/growth.md and bench/growth.png. Asserts nothing.

    python bench/growth.py [--minutes 30] [--rate 500] [--smoke]
"""
import argparse
import os
import re
import statistics
import subprocess
import threading
import time

import psycopg2

import run  # bench/run.py: its pgbench scripts

HERE = os.path.dirname(os.path.abspath(__file__))
URL = "host={PGHOST} port={PGPORT} user={PGUSER} dbname={PGDATABASE}".format(**os.environ)
PGBENCH = os.path.join(os.environ.get("PQ_PG_BIN", "/usr/lib/postgresql/15/bin"), "pgbench")

SIZES = """
SELECT pg_relation_size('queue'), pg_indexes_size('queue'), pg_total_relation_size('queue'),
       (SELECT count(*) FROM queue), (SELECT count(*) FROM queue WHERE dequeued_at IS NULL)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=int, default=500, help="churn transactions per second (a put or a get each)")
    ap.add_argument("--smoke", action="store_true", help="half a minute, for the test command")
    args = ap.parse_args()
    seconds = 30 if args.smoke else int(args.minutes * 60)
    sample = 5 if args.smoke else 60
    out = os.path.join(os.path.dirname(HERE), "target", "bench-smoke") if args.smoke else HERE
    os.makedirs(out, exist_ok=True)
    conn = psycopg2.connect(URL)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS pq")
    cur.execute("TRUNCATE queue")
    cur.execute("SELECT pq_channel('load the library')")  # defines pq.* in this session
    cur.execute("SHOW pq.retention")
    retention = cur.fetchone()[0]
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pq maintenance'")
    workers = cur.fetchone()[0]
    print(f"churn at {args.rate}/s for {seconds} s; pq.retention = {retention}; maintenance workers: {workers}", flush=True)
    # pgbench's --rate paces transactions (each script run is one put and one get).
    bench = subprocess.Popen(
        [PGBENCH, "-n", "-f", run.script_path("churn_pq.sql"), "-c", "4", "-j", "4",
         "-T", str(seconds), "-R", str(max(1, args.rate // 2)), "-P", str(sample)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = []
    t0 = time.monotonic()
    while bench.poll() is None:
        time.sleep(sample - ((time.monotonic() - t0) % sample))
        if bench.poll() is not None:
            break
        cur.execute(SIZES)
        heap, idx, total, jobs, pending = cur.fetchone()
        rows.append((round(time.monotonic() - t0), heap, idx, total, jobs, pending))
        print(f"  {rows[-1][0]:>5} s  heap {heap / 1e6:8.2f} MB  indexes {idx / 1e6:8.2f} MB  rows {jobs:>9,}  pending {pending:>6,}", flush=True)
    _, err = bench.communicate()
    tps = [float(x) for x in re.findall(r"progress: [0-9.]+ s, ([0-9.]+) tps", err)]
    worker = "the maintenance worker purging every 10 s" if workers else "no maintenance worker (pq not preloaded)"
    lines = [f"Steady churn of {args.rate // 2} put+get pairs/s ({args.rate} transactions/s; 4 clients, pgbench --rate), "
             f"{seconds} s, pq.retention = {retention}, {worker}; autovacuum at its defaults. "
             f"Median rate reached: {statistics.median(tps) if tps else 0:,.0f} pairs/s.", "",
             "| time | heap MB | indexes MB | total MB | rows | pending |", "|---:|---:|---:|---:|---:|---:|"]
    for t, heap, idx, total, jobs, pending in rows:
        lines.append(f"| {t // 60}m{t % 60:02d}s | {heap / 1e6:.2f} | {idx / 1e6:.2f} | {total / 1e6:.2f} | {jobs:,} | {pending:,} |")
    early = seconds // 2 if args.smoke else 300
    five = [r for r in rows if r[0] <= early]
    if five and rows:
        lines.append("")
        lines.append(f"Total size at the end / after the first {early} s: "
                     f"{rows[-1][3] / five[-1][3]:.2f} (target: at most 1.00, i.e. no growth).")
    text = "\n".join(lines)
    print("\n" + text)
    with open(os.path.join(out, "growth-smoke.md" if args.smoke else "growth.md"), "w") as f:
        f.write(text + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([r[0] / 60 for r in rows], [r[1] / 1e6 for r in rows], label="heap")
    ax.plot([r[0] / 60 for r in rows], [r[2] / 1e6 for r in rows], label="indexes")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.set_title(f"queue table size under a steady churn, pq.retention = {retention}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "growth-smoke.png" if args.smoke else "growth.png"), dpi=100)


if __name__ == "__main__":
    main()
