//! Background workers: perform tasks continuously for configured queues, started and stopped
//! with the server. Needs `shared_preload_libraries = 'pq'` and, in postgresql.conf:
//!
//! ```text
//! pq.worker_queues = 'default,emails'   # queues to work (of the extension's queue table)
//! pq.worker_database = 'app'            # database the extension is installed in
//! pq.worker_role = 'pq_worker'          # role the workers connect as (required; not a superuser)
//! pq.workers_per_queue = 1
//! ```
//!
//! Each worker commits after every job. A task that errors is recorded (see `work`) and the
//! worker goes on. Tasks run as the role that enqueued them (see `sandbox`); the worker role
//! only claims jobs and records outcomes, so it needs no more than `SELECT, UPDATE` on the
//! queue table, and a superuser is refused unless `pq.worker_allow_superuser` is on.
//!
//! Signals are handled as in any backend (`die`): `pg_ctl stop -m fast` or
//! `pg_terminate_backend` cancels a running task at its next interrupt check (its
//! transaction rolls back and the job returns to the queue) and ends the worker with an error
//! exit, so the postmaster restarts it after five seconds unless the server is shutting down.

use crate::tasks::work::{work, Options};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;
use std::time::Duration;

static QUEUES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static ROLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static PER_QUEUE: GucSetting<i32> = GucSetting::<i32>::new(1);
static ALLOW_SUPERUSER: GucSetting<bool> = GucSetting::<bool>::new(false);

/// How long a worker waits for a job inside one transaction before committing and looking
/// again (it wakes at once when a job is put).
const WAIT: Duration = Duration::from_secs(1);

/// When preloaded, defines the GUCs and registers the workers. Called from `_PG_init`.
pub fn init() {
    // Postmaster-level settings can only be defined while preloading: a backend loading the
    // library later must not define them (PostgreSQL would end it with FATAL).
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    GucRegistry::define_string_guc(
        c"pq.worker_queues",
        c"Queues the pq background workers perform tasks for, comma separated.",
        c"Needs shared_preload_libraries = 'pq'. Empty: no workers.",
        &QUEUES,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pq.worker_database",
        c"Database the pq background workers connect to.",
        c"The database where CREATE EXTENSION pq was run.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pq.worker_role",
        c"Role the pq background workers connect as.",
        c"Required for workers to start. Tasks run as the roles that enqueued them.",
        &ROLE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pq.workers_per_queue",
        c"Background workers per queue in pq.worker_queues.",
        c"",
        &PER_QUEUE,
        1,
        64,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pq.worker_allow_superuser",
        c"Lets pq.worker_role be a superuser.",
        c"Off by default: a worker needs only SELECT and UPDATE on the queue table.",
        &ALLOW_SUPERUSER,
        GucContext::Sighup,
        GucFlags::default(),
    );
    crate::operations::retention::register_worker();
    let queues = setting(&QUEUES).unwrap_or_default();
    let queues: Vec<&str> = queues
        .split(',')
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .collect();
    if queues.is_empty() {
        return;
    }
    if setting(&ROLE).is_none() {
        pgrx::warning!("pq: pq.worker_queues is set but pq.worker_role is not; no workers started");
        return;
    }
    for queue in queues {
        for n in 1..=PER_QUEUE.get() {
            BackgroundWorkerBuilder::new(&format!("pq worker {queue} #{n}"))
                .set_type("pq worker")
                .set_library("pq")
                .set_function("pq_worker_main")
                .set_extra(queue)
                .enable_spi_access()
                .set_restart_time(Some(Duration::from_secs(5)))
                .load();
        }
    }
}

/// `pq.worker_database`: where the workers connect.
pub fn database() -> Option<String> {
    setting(&DATABASE)
}

fn setting(g: &GucSetting<Option<CString>>) -> Option<String> {
    g.get()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
}

// PostgreSQL's SIGTERM handler for backends (tcop/postgres.c). pgrx's binding is a Rust
// wrapper, not the C function a signal handler must be.
unsafe extern "C-unwind" {
    fn die(signal: std::ffi::c_int);
}

/// A worker's main loop: one job per transaction, until the server stops.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pq_worker_main(_arg: pg_sys::Datum) {
    let queue = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    // SIGTERM as in a regular backend: the next CHECK_FOR_INTERRUPTS, inside a task or a
    // wait, raises FATAL, which rolls the transaction back and exits with an error code.
    // SAFETY: installing PostgreSQL's own handler for a signal, before any is delivered.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(die));
        #[cfg(feature = "pg18")]
        pg_sys::pqsignal_be(pg_sys::SIGTERM as i32, Some(die));
    }
    let database = setting(&DATABASE);
    let role = setting(&ROLE);
    BackgroundWorker::connect_worker_to_spi(database.as_deref(), role.as_deref());
    if unsafe { pg_sys::superuser() } && !ALLOW_SUPERUSER.get() {
        log!(
            "pq worker for queue {queue:?} not started: pq.worker_role {:?} is a superuser; use a role with SELECT, UPDATE on the queue table, or set pq.worker_allow_superuser = on",
            role.unwrap_or_default()
        );
        // Exit code 0: the postmaster does not restart it.
        return;
    }
    // pg_stat_activity shows which queue a worker serves.
    let name = CString::new(format!("pq worker {queue}")).unwrap_or_default();
    unsafe {
        pg_sys::SetConfigOption(
            c"application_name".as_ptr(),
            name.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
    }
    log!("pq worker for queue {queue:?} started");
    let opts = Options {
        burst: false,
        timeout: WAIT,
        max_jobs: Some(1),
    };
    loop {
        check_for_interrupts!();
        let ready = BackgroundWorker::transaction(|| {
            let table = extension_table();
            if let Some(table) = table {
                work(&table, &queue, &opts);
            }
            table.is_some()
        });
        if !ready {
            // The extension is not created yet in this database; look again later.
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                        as i32,
                    5000,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                pg_sys::ResetLatch(pg_sys::MyLatch);
            }
        }
    }
}

/// The `queue` table in the extension's schema, once `CREATE EXTENSION pq` has run (also one
/// made again with `pq_create_table('queue')` there, which is no member of the extension).
fn extension_table() -> Option<crate::plumbing::table::QueueTable> {
    use crate::plumbing::table;
    let (_, schema) = table::extension_schema()?;
    let oid = table::relation_in(schema, "queue")?;
    Some(table::QueueTable::resolve(Some(oid)))
}
