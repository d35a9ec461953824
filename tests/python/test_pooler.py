"""The `pq` command-line tool behind PgBouncer in transaction pooling mode (pool of 4): 400
parallel puts, then parallel gets until the queue is empty. Every call succeeds, every job is
taken exactly once. scripts/test starts PgBouncer and sets PQ_PGBOUNCER_PORT and PQ_CLI."""
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

PORT = os.environ.get("PQ_PGBOUNCER_PORT")
CLI = os.environ.get("PQ_CLI")
needs_pooler = pytest.mark.skipif(not (PORT and CLI), reason="scripts/test starts PgBouncer")


def cli(*args):
    env = dict(os.environ, DATABASE_URL=f"host=127.0.0.1 port={PORT} user=postgres dbname=postgres")
    done = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout.strip(), done.stderr.strip()


@needs_pooler
def test_parallel_cli_puts_and_gets_through_pgbouncer():
    with ThreadPoolExecutor(max_workers=32) as pool:
        puts = list(pool.map(lambda n: cli("put", "pooler_cli", json.dumps({"n": n})), range(400)))
    failures = [p for p in puts if p[0] != 0]
    assert not failures, failures[:3]
    put_ids = {int(p[1]) for p in puts}
    assert len(put_ids) == 400

    def drain(_):
        got = []
        while True:
            code, out, err = cli("get", "pooler_cli", "--timeout", "0s")
            assert code == 0, err
            if not out:
                return got
            got.append(json.loads(out)["id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        got = [i for ids in pool.map(drain, range(16)) for i in ids]
    assert len(got) == len(set(got)), "a job was taken twice"
    assert set(got) == put_ids, "a job was lost"


@needs_pooler
def test_operator_verbs_through_pgbouncer():
    def ok(*args):
        code, out, err = cli(*args)
        assert code == 0, (args, err)
        return out

    cli("unschedule", "cli_tick")
    first = ok("put", "cli_ops", '{"n": 1}', "--key", "order-1")
    assert ok("put", "cli_ops", '{"n": 2}', "--key", "order-1") == first, "a unique job"
    assert ok("pause", "cli_ops") == "true"
    assert ok("pause", "cli_ops") == "false"
    assert ok("get", "cli_ops", "--timeout", "0s") == "", "paused"
    row = [line.split() for line in ok("stats").splitlines() if line.startswith("cli_ops ")][0]
    assert row[1] == "1" and row[6] == "true", row
    assert ok("resume", "cli_ops") == "true"
    assert ok("limit", "cli_ops", "2") == "none"
    assert ok("limit", "cli_ops", "none") == "2"
    code, _, err = cli("limit", "cli_ops", "two")
    assert code == 1 and "not a number" in err
    assert ok("status", first) == "ready"
    assert ok("cancel", first) == "true"
    assert ok("status", first) == "cancelled"
    assert ok("cancel", first) == "false"
    assert ok("status", "987654321") == "unknown"
    assert ok("get", "cli_ops", "--timeout", "0s") == "", "cancelled jobs never run"
    assert "T" in ok("schedule", "cli_tick", "*/5 * * * *", "cli_ops", '{"tick": true}')
    assert ok("unschedule", "cli_tick") == "true"
    assert ok("unschedule", "cli_tick") == "false"
    code, _, err = cli("schedule", "cli_tick", "every minute", "cli_ops")
    assert code == 1 and "5 fields" in err, err
