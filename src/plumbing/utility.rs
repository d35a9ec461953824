//! The utility hook (when pq is preloaded): the few utility statements of any session that pq
//! must know about.
//!
//! - `LISTEN channel`: counted, so `pq.notify = auto` notifies only channels someone listens
//!   on (see `notify`).
//! - `COMMIT PREPARED` and `ROLLBACK PREPARED`: a prepared transaction ends in a session that
//!   never saw its puts or claims, so no transaction callback can tell the queues' heads what
//!   became ready. After either, every head of this database goes back to the start of its
//!   queue (see `heads`): the next claims read the queue whole, once.

use pgrx::prelude::*;

static mut PREV_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Chains the hook. Called from `_PG_init` when preloading.
pub fn init() {
    if crate::queue::heads::active() {
        // SAFETY: chaining the hook once, while the library is preloaded.
        unsafe {
            PREV_UTILITY = pg_sys::ProcessUtility_hook;
            pg_sys::ProcessUtility_hook = Some(on_utility);
        }
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)] // PostgreSQL's hook signature
unsafe extern "C-unwind" fn on_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: PostgreSQL hands us a valid planned utility statement.
    unsafe {
        let stmt = (*pstmt).utilityStmt;
        let tag = if stmt.is_null() {
            pg_sys::NodeTag::T_Invalid
        } else {
            (*stmt).type_
        };
        if tag == pg_sys::NodeTag::T_ListenStmt {
            let name = (*(stmt as *mut pg_sys::ListenStmt)).conditionname;
            if !name.is_null() {
                crate::queue::notify::listening(&std::ffi::CStr::from_ptr(name).to_string_lossy());
            }
        }
        let prepared_end = tag == pg_sys::NodeTag::T_TransactionStmt
            && matches!(
                (*(stmt as *mut pg_sys::TransactionStmt)).kind,
                pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED
                    | pg_sys::TransactionStmtKind::TRANS_STMT_ROLLBACK_PREPARED
            );
        match PREV_UTILITY {
            Some(prev) => prev(pstmt, query, read_only_tree, context, params, env, dest, qc),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query,
                read_only_tree,
                context,
                params,
                env,
                dest,
                qc,
            ),
        }
        if prepared_end {
            crate::queue::heads::reset_database();
        }
    }
}
