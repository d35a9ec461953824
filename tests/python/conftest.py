"""Fixtures for the Python pq interop tests: a fresh database with the pq extension on the
cluster scripts/test started (PGHOST, PGPORT, PGUSER in the environment)."""
import os
import uuid

import psycopg2
import pytest


def connect(dbname):
    return psycopg2.connect(dbname=dbname, host=os.environ["PGHOST"], port=os.environ["PGPORT"],
                            user=os.environ.get("PGUSER", "postgres"))


@pytest.fixture
def db():
    """A new database with CREATE EXTENSION pq; yields its name, dropped afterwards."""
    name = "interop_" + uuid.uuid4().hex[:8]
    admin = connect("postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    conn = connect(name)
    conn.autocommit = True
    conn.cursor().execute("CREATE EXTENSION pq")
    conn.close()
    yield name
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def sql(db):
    """Runs a statement in autocommit on the test database; returns all rows (or None)."""
    conn = connect(db)
    conn.autocommit = True

    def run(statement, *args):
        cur = conn.cursor()
        cur.execute(statement, args)
        return cur.fetchall() if cur.description else None

    yield run
    conn.close()


@pytest.fixture
def pq(db):
    """Python pq 1.9.1 pointed at the extension's table."""
    from pq import PQ
    conn = connect(db)
    yield PQ(conn, table="queue")
    conn.close()
