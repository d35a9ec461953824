//! The task registry: the only functions a task job may ever call.
//!
//! Job data never chooses code that nobody registered (River's rule; Python pq runs only the
//! handlers its worker registered). A function's owner, or a superuser, registers it with
//! `pq_register_task('eat(text)')`; `pq_put_task` refuses, and `pq_work` records as failed
//! with 42501 without calling it, any task naming a function that is not registered, however
//! the job got into the table. The registry is the table `pq_registered_tasks` (view
//! `pq_tasks`), writable only by the extension's owner: registering writes it as that owner
//! once the caller's ownership of the function is checked, as a `SECURITY DEFINER` function
//! would, but with the check made on the caller's real identity.

use crate::plumbing::error::{raise, require};
use crate::plumbing::pinning::pinned;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

/// The registry table (qualified name) and its owner. Runs under the pinned search_path.
fn registry() -> (String, pg_sys::Oid) {
    match crate::plumbing::table::extension_relation("pq_registered_tasks") {
        Some((oid, owner)) => (crate::plumbing::table::qualified_name(oid), owner),
        None => raise(
            ERRCODE_UNDEFINED_OBJECT,
            "the pq task registry does not exist in this database".into(),
            "run CREATE EXTENSION pq, or ALTER EXTENSION pq UPDATE to 0.3.0 or later",
        ),
    }
}

/// The registry's qualified name, for statements that read it (`{registry}`).
pub fn registry_name() -> String {
    registry().0
}

/// Checks that the current role may (un)register `function`: a plain function it owns. Runs
/// under the pinned search_path.
fn check_owner(function: pg_sys::Oid, signature: &str, verb: &str) {
    let (kind, owner) = Spi::get_two_with_args::<String, pg_sys::Oid>(
        include_str!("../queries/function_owner.sql"),
        &[function.into()],
    )
    .unwrap_or((None, None));
    let (Some(kind), Some(owner)) = (kind, owner) else {
        raise(
            ERRCODE_UNDEFINED_FUNCTION,
            format!("function with OID {} does not exist", function.to_u32()),
            "name an existing function, e.g. 'eat(text)'",
        )
    };
    if kind != "f" {
        raise(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!("{signature} is not a plain function (prokind '{kind}'): only functions can be tasks"),
            "wrap a procedure or aggregate in a function and register that",
        )
    }
    if !unsafe { pg_sys::has_privs_of_role(pg_sys::GetUserId(), owner) } {
        raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be owner of function {signature} to {verb} it as a task"),
            &format!("ask its owner or a superuser to run SELECT pq_{verb}_task('{signature}')"),
        )
    }
}

/// Runs the registry statement `sql` (`{registry}` for the table) for `function`; true when it
/// changed a row.
fn write(sql: &str, function: pg_sys::Oid, extra: Option<pg_sys::Oid>) -> bool {
    let (name, owner) = registry();
    let sql = sql.replace("{registry}", &name);
    pinned(|_| {
        crate::tasks::sandbox::as_role(owner, 0, || {
            Spi::connect_mut(|client| {
                let mut args = vec![function.into()];
                if let Some(role) = extra {
                    args.push(role.into());
                }
                client
                    .update(sql.as_str(), None, &args)
                    .map(|t| !t.is_empty())
                    .unwrap_or_else(|e| panic!("task registry: {e}"))
            })
        })
    })
}

/// Registers `function` as a task: only registered functions ever run as tasks. Allowed to
/// the function's owner (or a member of the owning role) and to superusers. Returns true when
/// it was not registered before.
///
/// ```sql
/// SELECT pq_register_task('eat(text)');
/// SELECT * FROM pq_tasks;
/// ```
#[pg_extern(sql = false)]
fn pq_register_task(function: Option<pg_sys::Oid>) -> bool {
    let function = require(function, "function", "'eat(text)'");
    pinned(|_| {
        check_owner(
            function,
            &crate::tasks::task::signature(function),
            "register",
        );
        write(
            include_str!("../queries/registry_add.sql"),
            function,
            Some(unsafe { pg_sys::GetUserId() }),
        )
    })
}

/// Unregisters task `function`: jobs still naming it are refused when worked. Allowed to the
/// function's owner and to superusers. Returns true when it was registered.
///
/// ```sql
/// SELECT pq_unregister_task('eat(text)');
/// ```
#[pg_extern(sql = false)]
fn pq_unregister_task(function: Option<pg_sys::Oid>) -> bool {
    let function = require(function, "function", "'eat(text)'");
    pinned(|_| {
        check_owner(
            function,
            &crate::tasks::task::signature(function),
            "unregister",
        );
        write(
            include_str!("../queries/registry_remove.sql"),
            function,
            None,
        )
    })
}
