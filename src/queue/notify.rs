//! Notifications: `pq_put` sends `NOTIFY` on the queue's channel, delivered at commit, so
//! LISTEN-based clients (Python pq's blocking `get`) wake when a job lands. (pq's own blocked
//! getters, and the Rust client's, wait in the server and are woken by `wake`, not by this.)
//!
//! The channel is the queue name, or `'pq_' || md5(name)` when the name is longer than 63
//! bytes (PostgreSQL's channel name limit). Python pq's trigger counts characters instead: the
//! two agree on every name of up to 63 bytes, and differ only for a name of at most 63
//! characters but more bytes, where Python's own `NOTIFY` fails (channel name too long).
//!
//! A NOTIFY is not free: PostgreSQL serialises the commits of notifying transactions on one
//! cluster-wide lock, held through the commit's WAL flush, so notifying puts lose group commit
//! (4 clients with `synchronous_commit = on`: 4,700 puts/s against 7,800 without). With pq
//! preloaded, every backend sees every `LISTEN` (the utility hook, `utility`) and counts, per
//! channel, the sessions that ever listened on it and are still connected; by default
//! (`pq.notify = auto`) a put notifies only a channel somebody listens on, decided just before
//! commit. Without preload pq cannot see other sessions' `LISTEN`s, so `auto` notifies every
//! put, as `on` does.

use pgrx::prelude::*;
use pgrx::{
    pg_shmem_init, GucContext, GucFlags, GucRegistry, GucSetting, PGRXSharedMemory, PgLwLock,
    PostgresGucEnum,
};
use std::cell::RefCell;

/// `pq.notify`'s values.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Notify {
    /// Notify channels someone listens on (every channel when pq is not preloaded).
    #[name = c"auto"]
    Auto,
    /// Notify on every put.
    #[name = c"on"]
    On,
    /// Never notify (blocked `pq_get`s are woken by latch either way).
    #[name = c"off"]
    Off,
}

static NOTIFY: GucSetting<Notify> = GucSetting::<Notify>::new(Notify::Auto);

/// Channels tracked; more listened channels than this share counters (a hash collision only
/// costs a NOTIFY nobody needed).
const CHANNELS: usize = 1024;

#[derive(Copy, Clone)]
struct Listeners {
    /// Sessions that ever ran LISTEN on a channel hashing to each slot and are still connected.
    count: [u32; CHANNELS],
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            count: [0; CHANNELS],
        }
    }
}

// SAFETY: plain data.
unsafe impl PGRXSharedMemory for Listeners {}

static LISTENERS: PgLwLock<Listeners> = unsafe { PgLwLock::new(c"pq_listeners") };

thread_local! {
    /// The slots this session counted itself in, released when it exits.
    static MINE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Defines `pq.notify`; when preloaded, the listener counts and the hook that keeps them.
/// Called from `_PG_init`.
pub fn init() {
    GucRegistry::define_enum_guc(
        c"pq.notify",
        c"When pq_put sends NOTIFY on the queue's channel at commit: auto, on or off.",
        c"auto: only channels some session LISTENs on (needs shared_preload_libraries = 'pq'; otherwise every put). Blocked pq_get calls are woken either way.",
        &NOTIFY,
        GucContext::Userset,
        GucFlags::default(),
    );
    if crate::queue::heads::active() {
        pg_shmem_init!(LISTENERS);
    }
}

fn slot(channel: &str) -> usize {
    (crate::plumbing::hash::fnv1a64(&[channel.as_bytes()]) % CHANNELS as u64) as usize
}

/// Counts this session as a listener of `channel` (once; until it exits), for the utility
/// hook (see `utility`), which sees every `LISTEN`. Counting at the statement rather than at
/// commit errs towards notifying; `UNLISTEN` is not counted down, for the same reason.
pub fn listening(channel: &str) {
    let i = slot(channel);
    let first = MINE.with(|m| {
        let mut m = m.borrow_mut();
        if m.contains(&i) {
            return None;
        }
        m.push(i);
        Some(m.len() == 1)
    });
    if let Some(first) = first {
        LISTENERS.exclusive().count[i] += 1;
        if first {
            // SAFETY: registering an exit callback of this backend.
            unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0)) };
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    let mine = MINE.with(|m| std::mem::take(&mut *m.borrow_mut()));
    let mut l = LISTENERS.exclusive();
    for i in mine {
        l.count[i] = l.count[i].saturating_sub(1);
    }
}

use pgrx::{direct_function_call, direct_function_call_as_datum};

/// The channel a client LISTENs on for `queue`.
///
/// ```sql
/// SELECT pq_channel('apples');  -- apples
/// ```
pub fn channel(queue: &str) -> String {
    if queue.len() <= 63 {
        return queue.to_string();
    }
    let md5 = unsafe { direct_function_call::<String>(pg_sys::md5_text, &[queue.into_datum()]) };
    format!("pq_{}", md5.expect("md5 is never NULL"))
}

thread_local! {
    /// Channels this transaction put jobs for, and whether `pq.notify` was `on` (else `auto`)
    /// when it did: notified just before commit ([`flush`]).
    static PENDING: RefCell<Vec<(String, bool)>> = const { RefCell::new(Vec::new()) };
}

/// Notes that `queue` got a job, to notify its channel when the transaction commits (as
/// PostgreSQL drops duplicate notifications within a transaction, one per channel).
pub fn notify(queue: &str) {
    let always = match NOTIFY.get() {
        Notify::Off => return,
        Notify::On => true,
        Notify::Auto => false,
    };
    let channel = channel(queue);
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match p.iter_mut().find(|(c, _)| *c == channel) {
            Some(entry) => entry.1 |= always,
            None => p.push((channel, always)),
        }
    });
}

/// Just before commit, sends the NOTIFYs of this transaction's puts. Deciding here, not at
/// the put, is what lets `auto` see a session that began to LISTEN while the transaction ran;
/// one that begins during the commit itself may still miss it (a client's own timeout covers
/// that instant, as Python pq's 1 s does). Before a `PREPARE TRANSACTION` (`prepare`), `auto`
/// sends none: PostgreSQL cannot prepare a NOTIFY, and a producer's two-phase commit must not
/// fail because some other session listens; `on` still does, and PREPARE fails as it would
/// with a NOTIFY of the producer's own.
pub fn flush(prepare: bool) {
    for (channel, always) in PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())) {
        let listened =
            || !crate::queue::heads::active() || LISTENERS.share().count[slot(&channel)] > 0;
        if always || (!prepare && listened()) {
            unsafe {
                direct_function_call_as_datum(
                    pg_sys::pg_notify,
                    &[channel.into_datum(), "".into_datum()],
                );
            }
        }
    }
}

/// Whether some connected session has listened on `channel` (test builds only).
#[cfg(any(test, feature = "pg_test"))]
#[pg_extern(schema = "tests")]
fn pq_listened(channel: &str) -> bool {
    crate::queue::heads::active() && LISTENERS.share().count[slot(channel)] > 0
}

/// Forgets the notifications of a transaction that rolled back.
pub fn forget() {
    PENDING.with(|p| p.borrow_mut().clear());
}

/// The NOTIFY channel of a queue, for clients that LISTEN.
///
/// ```sql
/// LISTEN apples;  -- or: SELECT pq_channel('apples')
/// ```
#[pg_extern(sql = false)]
fn pq_channel(queue: Option<&str>) -> String {
    channel(crate::plumbing::error::require_queue(queue))
}
