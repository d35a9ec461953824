//! Pinning `search_path` around pq's own statements inside functions that must not pin it
//! for their whole call (task enqueue resolves names, and `pq_work` runs tasks, in the
//! caller's `search_path`). Functions of the plain queue API pin it with a `SET` clause.

use pgrx::prelude::*;

/// The path pq's own statements run under: nothing a caller can shadow.
const PINNED: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Runs `f` with `search_path = pg_catalog, pg_temp`, restoring the caller's afterwards, as a
/// function's `SET` clause does. On error the (sub)transaction abort restores it.
///
/// ```ignore
/// let id = search_path::pinned(|| put::insert(&table, queue, data, None, None));
/// ```
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            PINNED.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        let r = f();
        pg_sys::AtEOXact_GUC(true, level);
        r
    }
}
