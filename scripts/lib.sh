# Shared by scripts/demo, scripts/test and scripts/bench: install what is missing, and run
# throwaway PostgreSQL clusters as the unprivileged `postgres` user. Sourced, not run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.1
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages, cargo-pgrx and its config; each step is skipped when already done.
ensure_deps() {
    local pkgs=(postgresql-15 postgresql-server-dev-15 postgresql-client-15 libclang-dev clang
                sudo pkg-config make gcc)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
        say "installing cargo-pgrx $PGRX_VERSION (about 4 minutes, once)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs "pg15" "$HOME/.pgrx/config.toml"; then
        say "pointing cargo-pgrx at the installed PostgreSQL 15"
        cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
    fi
    id postgres >/dev/null 2>&1 || { echo "no postgres system user; is postgresql-15 installed?" >&2; exit 1; }
}

# Build (release) and install the extension into the system PostgreSQL 15.
install_extension() {
    say "building and installing the pq extension (release)"
    (cd "$ROOT" && cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null)
    install_released_scripts
}

# Install scripts of released versions (sql/pq--A.sql), so that they can be installed and
# upgraded; cargo pgrx install copies only the current one and the upgrade scripts.
install_released_scripts() {
    as_root cp "$ROOT"/sql/pq--*.sql "$("$PG_CONFIG" --sharedir)/extension/"
}

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_cluster DIR [postgres -c options...]: a fresh cluster in DIR owned by `postgres`,
# listening on loopback and a socket in DIR. Sets PGHOST, PGPORT, PGUSER, PGDATABASE.
start_cluster() {
    local dir=$1; shift
    as_root rm -rf "$dir"
    mkdir -p "$dir"
    as_root chown postgres "$dir"
    as_root runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust \
        --locale=C.UTF-8 >/dev/null
    export PGPORT=${PGPORT:-$(free_port)} PGHOST=$dir PGUSER=postgres PGDATABASE=postgres
    local opts="-p $PGPORT -k $dir -c listen_addresses=127.0.0.1"
    for o in "$@"; do opts="$opts -c $o"; done
    as_root runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -o "$opts" -w start >/dev/null
    CLUSTER_DIR=$dir
}

stop_cluster() {
    if [ -n "${CLUSTER_DIR:-}" ] && [ -f "$CLUSTER_DIR/data/postmaster.pid" ]; then
        as_root runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null || true
    fi
}

# A Python virtualenv with Python pq 1.9.1 and psycopg2 from PyPI (benchmarks, interop tests).
VENV=$ROOT/target/venv
ensure_venv() {
    if ! "$VENV/bin/python" -c 'import pq, psycopg2, pytest, matplotlib' 2>/dev/null; then
        say "creating the Python virtualenv (pq 1.9.1, psycopg2, pytest, matplotlib)"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q pq==1.9.1 psycopg2-binary pytest matplotlib
    fi
}
