//! Pinning the settings pq's own statements run under: `search_path` and the planner
//! settings. Every SQL function pins them in Rust around its statements rather than with a
//! `SET` clause, which PostgreSQL would apply on every call of a set-returning function, and
//! which could not give tasks settings of their own. Running one of pq's prepared statements
//! takes a [`Pinned`] token, which only [`pinned`] makes: an unpinned statement does not compile.

use pgrx::prelude::*;

/// Sets `name` to `value` at the current GUC nest level (`GUC_ACTION_SAVE`, as a function's
/// `SET` clause does): the end of that level, or of the (sub)transaction, restores it.
///
/// # Safety
/// Must be paired with `NewGUCNestLevel` / `AtEOXact_GUC` by the caller.
pub unsafe fn set_saved(
    name: &std::ffi::CStr,
    value: &std::ffi::CStr,
    context: pg_sys::GucContext::Type,
) {
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            context,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// Proof that pq's settings are pinned, for as long as it is borrowed: made only by [`pinned`].
pub struct Pinned(());

/// The path pq's own statements run under: nothing a caller can shadow.
const PINNED: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Runs `f` with `search_path = pg_catalog, pg_temp`, so no caller's schema can shadow a name
/// pq's statements use, and `plan_cache_mode = force_generic_plan`, so pq's saved plans are
/// planned once (left to choose, PostgreSQL kept replanning the claim cursor on every call).
/// Restores the caller's settings afterwards, as a `SET` clause does; on error the
/// (sub)transaction abort restores them. Seq scans and bitmap scans are off while planning:
/// a generic plan does not know the time `schedule_at <= $2` compares with and would guess a
/// third of all scheduled jobs are due; an index scan stays cheap however many are not. JIT is
/// off: pq's statements touch a few rows, and compiling them cost more than running them.
///
/// ```ignore
/// let n = pinning::pinned(|p| table.with_plan(p, client, Stmt::Len, |plan| ...));
/// ```
pub fn pinned<R>(f: impl FnOnce(&Pinned) -> R) -> R {
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        let settings = [
            (c"search_path", PINNED),
            (c"plan_cache_mode", c"force_generic_plan"),
            (c"enable_seqscan", c"off"),
            (c"enable_bitmapscan", c"off"),
            // A disabled seq scan costs 10^10, far past jit_above_cost: on a JIT-enabled server
            // every claim of a table without pq's indexes compiled its candidates query
            // (about 330 ms each on PostgreSQL 15; a job due in 350 ms came after 690 ms).
            (c"jit", c"off"),
        ];
        for (name, value) in settings {
            set_saved(name, value, pg_sys::GucContext::PGC_USERSET);
        }
        let r = f(&Pinned(()));
        pg_sys::AtEOXact_GUC(true, level);
        r
    }
}
