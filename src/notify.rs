//! Notifications: `pq_put` sends `NOTIFY` on the queue's channel, delivered at commit, so
//! LISTEN-based clients (Python pq's blocking `get`) wake when a job lands. (pq's own blocked
//! getters, and the Rust client's, wait in the server and are woken by `wake`, not by this.)
//!
//! The channel is the queue name, or `'pq_' || md5(name)` when the name is longer than 63
//! bytes (PostgreSQL's channel name limit). Python pq's trigger counts characters instead: the
//! two agree on every name of up to 63 bytes, and differ only for a name of at most 63
//! characters but more bytes, where Python's own `NOTIFY` fails (channel name too long).

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `pq.notify`: whether puts send NOTIFY. On by default (Python pq's clients LISTEN); a
/// deployment whose consumers all wait with `pq_get(queue, timeout)` may turn it off.
static NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Defines `pq.notify`. Called from `_PG_init`.
pub fn init() {
    GucRegistry::define_bool_guc(
        c"pq.notify",
        c"Whether pq_put sends NOTIFY on the queue's channel at commit.",
        c"Blocked pq_get calls are woken either way; LISTEN-based clients need it.",
        &NOTIFY,
        GucContext::Userset,
        GucFlags::default(),
    );
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

/// Queues a notification on `queue`'s channel; PostgreSQL sends it when the transaction
/// commits and drops duplicates within the transaction.
pub fn notify(queue: &str) {
    if !NOTIFY.get() {
        return;
    }
    let channel = channel(queue);
    unsafe {
        direct_function_call_as_datum(pg_sys::pg_notify, &[channel.into_datum(), "".into_datum()]);
    }
}

/// The NOTIFY channel of a queue, for clients that LISTEN.
///
/// ```sql
/// LISTEN apples;  -- or: SELECT pq_channel('apples')
/// ```
#[pg_extern(sql = false)]
fn pq_channel(queue: Option<&str>) -> String {
    channel(crate::error::require_queue(queue))
}
