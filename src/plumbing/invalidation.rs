//! Relcache invalidations, for the per-session caches keyed by queue table: the layout checks
//! and saved plans (`table`), the queue controls (`controls`) and the layouts pq writes
//! directly (`queue::layout`). PostgreSQL calls
//! [`on_relcache_invalidation`] for every relation whose definition changed (or `0`: all of
//! them); each cache takes the tables marked stale since it last looked and drops them.

use pgrx::prelude::*;
use std::cell::RefCell;

/// The caches that listen.
#[derive(Clone, Copy)]
pub enum Cache {
    Tables = 0,
    Controls = 1,
    Layouts = 2,
}

thread_local! {
    /// Per cache: tables whose definition changed since it last looked; `None`: every table.
    static STALE: [RefCell<Vec<Option<pg_sys::Oid>>>; 3] =
        const { [RefCell::new(Vec::new()), RefCell::new(Vec::new()), RefCell::new(Vec::new())] };
}

/// Most tables a cache is told about one by one before it is told "every table".
const MARKS: usize = 64;

/// Relcache invalidation callback, registered in `_PG_init`.
#[pg_guard]
pub unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let which = (relid != pg_sys::Oid::INVALID).then_some(relid);
    STALE.with(|caches| {
        for s in caches {
            // Never re-entered in practice; a missed mark only delays a reload until the next.
            if let Ok(mut s) = s.try_borrow_mut() {
                // Bounded: a backend that rarely calls pq may see millions of invalidations
                // (temporary tables come and go) before a cache looks; past a few dozen marks,
                // "every table" says it in one.
                if s.first() == Some(&None) {
                    continue;
                }
                if s.len() >= MARKS || which.is_none() {
                    s.clear();
                    s.push(None);
                } else if !s.contains(&which) {
                    s.push(which);
                }
            }
        }
    });
}

/// What changed since `cache` last asked: a test for whether a table's entries are stale, or
/// `None` when nothing did.
///
/// ```ignore
/// if let Some(stale) = invalidation::take(Cache::Tables) { map.retain(|oid, _| !stale(oid)); }
/// ```
pub fn take(cache: Cache) -> Option<impl Fn(&pg_sys::Oid) -> bool> {
    let stale = STALE.with(|caches| std::mem::take(&mut *caches[cache as usize].borrow_mut()));
    if stale.is_empty() {
        return None;
    }
    let all = stale.contains(&None);
    Some(move |oid: &pg_sys::Oid| all || stale.contains(&Some(*oid)))
}
