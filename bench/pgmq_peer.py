"""PGMQ (github.com/pgmq/pgmq) as a peer of pq in the benchmark: pgmq.send beside pq_put, and
pgmq.read + pgmq.delete (or pgmq.pop) beside pq_get.

PGMQ's code is not kept in this repository. At bench time its SQL-only install script is taken
from the `pgmq` crate (its Rust client, which embeds the extension's SQL for its own SQL-only
installer), pinned by version and by the sha256 of the .crate file: cargo downloads the crate by
name, the file is checked and copied to target/pgmq-cache/, and pgmq.sql is read out of it. No C
extension is needed: the script creates schema `pgmq` itself when no `pgmq` extension exists.

    import pgmq_peer
    version = pgmq_peer.install(sql)   # download (once), verify, load; creates queue 'bench'
    pgmq_peer.reset(sql)               # empty the queue (TRUNCATE) and VACUUM ANALYZE it
    pgmq_peer.fill(sql, n)             # n ready messages in one pgmq.send_batch

`sql` is a function `sql(statement)` that runs one (possibly multi-statement) string in
autocommit mode, such as run.py's `sql`. Whether it passes the string through psycopg2's
%-interpolation (run.py's does: it calls execute(statement, ())) is detected, and PGMQ's `%`s
are escaped accordingly. pgbench scripts: pgmq_send.sql, pgmq_read.sql, pgmq_pop.sql (queue
QUEUE, below).
"""
import glob
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(ROOT, "target", "pgmq-cache")

CRATE = "pgmq"
CRATE_VERSION = "0.33.7"   # the newest non-prerelease pgmq crate; it embeds PGMQ 1.11.1's SQL
CRATE_SHA256 = "50eb534c14338bf3c0048606af7ea9fbf32f674debe392f9267eeeddf0582d1d"
SQL_MEMBER = f"{CRATE}-{CRATE_VERSION}/src/install/embedded/sql/pgmq.sql"
CONTROL_MEMBER = f"{CRATE}-{CRATE_VERSION}/src/install/embedded/pgmq.control"

QUEUE = "bench"            # the queue install() creates; the pgbench scripts name it too
MESSAGE = '{"kind":"Cox"}'  # the payload of pq's bench jobs


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def _cargo_cached():
    """The crate file in cargo's own download cache, if it is there."""
    home = os.environ.get("CARGO_HOME") or os.path.expanduser("~/.cargo")
    hits = glob.glob(os.path.join(home, "registry", "cache", "*", f"{CRATE}-{CRATE_VERSION}.crate"))
    return next((p for p in hits if _sha256(p) == CRATE_SHA256), hits[0] if hits else None)


def crate_file():
    """target/pgmq-cache/pgmq-<version>.crate, downloaded once and checked against CRATE_SHA256."""
    dest = os.path.join(CACHE, f"{CRATE}-{CRATE_VERSION}.crate")
    if os.path.exists(dest) and _sha256(dest) == CRATE_SHA256:
        return dest
    src = _cargo_cached()
    if src is None:
        # `cargo info NAME@VERSION` downloads that one .crate into cargo's cache (cargo checks it
        # against the registry index) without resolving its dependencies. It runs in an empty
        # directory so that no workspace around it is read.
        with tempfile.TemporaryDirectory() as tmp:
            run = subprocess.run(["cargo", "info", "--registry", "crates-io", f"{CRATE}@{CRATE_VERSION}"],
                                 cwd=tmp, capture_output=True, text=True)
        src = _cargo_cached()
        if src is None:
            raise RuntimeError(f"cargo did not download {CRATE} {CRATE_VERSION} "
                               f"(exit {run.returncode}): {run.stderr.strip()[-2000:]}")
    got = _sha256(src)
    if got != CRATE_SHA256:
        raise RuntimeError(f"{src}: sha256 {got}, expected {CRATE_SHA256}")
    os.makedirs(CACHE, exist_ok=True)
    tmp = f"{dest}.{os.getpid()}.tmp"
    shutil.copyfile(src, tmp)
    if _sha256(tmp) != CRATE_SHA256:
        os.unlink(tmp)
        raise RuntimeError(f"{dest}: copy does not match sha256 {CRATE_SHA256}")
    os.replace(tmp, dest)
    return dest


def install_script():
    """(PGMQ version, the text of its SQL-only install script), from the verified crate."""
    with tarfile.open(crate_file(), "r:gz") as tar:
        sql_text = tar.extractfile(SQL_MEMBER).read().decode()
        control = tar.extractfile(CONTROL_MEMBER).read().decode()
    version = next(line.split("=", 1)[1].strip().strip("'") for line in control.splitlines()
                   if line.strip().startswith("default_version"))
    return version, sql_text


def _interpolates(sql_func):
    """Whether sql_func runs its statement through %-interpolation (psycopg2 with args=())."""
    return sql_func("SELECT '%%'")[0][0] == "%"


def install(sql_func, queue=QUEUE):
    """Loads PGMQ's SQL-only install into the database (schema pgmq) unless this version is
    there already, then creates `queue` (a logged, non-partitioned queue; idempotent). Returns
    PGMQ's version, e.g. '1.11.1'."""
    version, script = install_script()
    marker = f"PGMQ {version}, SQL-only install from the {CRATE} crate {CRATE_VERSION} (pq bench)"
    if sql_func("SELECT count(*) FROM pg_extension WHERE extname = 'pgmq'")[0][0]:
        raise RuntimeError("the pgmq extension is installed here; the bench loads the SQL-only install")
    found = sql_func("""SELECT d.description FROM pg_namespace n
                        LEFT JOIN pg_description d ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass
                        WHERE n.nspname = 'pgmq'""")
    if not found:
        if _interpolates(sql_func):
            script = script.replace("%", "%%")
        # One simple-query string: one implicit transaction, so a failure leaves no half install.
        # The marker (no quote, no %) is what a later install() recognises.
        sql_func(script + f"\n;COMMENT ON SCHEMA pgmq IS '{marker}';")
    elif found[0][0] != marker:
        raise RuntimeError(f"schema pgmq exists but is not {marker!r} (it says {found[0][0]!r})")
    sql_func(f"SELECT pgmq.create('{queue}')")
    return version


def reset(sql_func, queue=QUEUE):
    """Empties the queue (pgmq.purge_queue: a TRUNCATE) and its archive, then VACUUM ANALYZE."""
    sql_func(f"SELECT pgmq.purge_queue('{queue}')")
    sql_func(f"TRUNCATE pgmq.a_{queue}")
    sql_func(f"VACUUM ANALYZE pgmq.q_{queue}")


def fill(sql_func, n, queue=QUEUE):
    """n ready messages, sent in bulk with one pgmq.send_batch (not what is measured)."""
    sql_func(f"SELECT count(*) FROM pgmq.send_batch('{queue}', array_fill('{MESSAGE}'::jsonb, ARRAY[{int(n)}]))")
    sql_func(f"VACUUM ANALYZE pgmq.q_{queue}")


def length(sql_func, queue=QUEUE):
    """Messages in the queue, visible or not."""
    return sql_func(f"SELECT count(*) FROM pgmq.q_{queue}")[0][0]
