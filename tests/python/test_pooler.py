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
