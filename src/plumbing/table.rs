//! Queue tables: resolving a `regclass` argument to a checked, quoted table name, and the
//! per-backend cache of prepared statements against it.
//!
//! Every function takes the table as `regclass`, so PostgreSQL resolves the name (in the
//! caller's `search_path`, raising 42P01 for unknown tables) before our code runs, and the
//! name reaches SQL only as `quote_ident(schema).quote_ident(table)`: never spliced raw.
//! Each statement's text lives once, in `src/queries/*.sql`, with `{table}` for the table.

use crate::plumbing::error::raise;
use crate::plumbing::pinning::Pinned;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::PgSqlErrorCode::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The prepared statements pq runs on a queue table, each the text of one file in
/// `src/queries/` (the other files there are run once, unprepared: the registry's and the
/// worker's lookups).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Stmt {
    Put,
    PutKeyed,
    PutMany,
    Candidates,
    SqlTaskCandidates,
    Claim,
    TaskPermit,
    NextDue,
    Len,
    Clear,
    Update,
    Stats,
    TaskOutcome,
    Requeue,
    RequeueKey,
    JobData,
    Purge,
    Cancel,
    Status,
    MetricsGauges,
}

impl Stmt {
    fn text(self) -> &'static str {
        match self {
            Stmt::Put => include_str!("../queries/put.sql"),
            Stmt::PutKeyed => include_str!("../queries/put_keyed.sql"),
            Stmt::PutMany => include_str!("../queries/put_many.sql"),
            Stmt::Candidates => include_str!("../queries/candidates.sql"),
            Stmt::SqlTaskCandidates => include_str!("../queries/sql_task_candidates.sql"),
            Stmt::Claim => include_str!("../queries/claim.sql"),
            Stmt::TaskPermit => include_str!("../queries/task_permit.sql"),
            Stmt::NextDue => include_str!("../queries/next_due.sql"),
            Stmt::Len => include_str!("../queries/len.sql"),
            Stmt::Clear => include_str!("../queries/clear.sql"),
            Stmt::Update => include_str!("../queries/update.sql"),
            Stmt::Stats => include_str!("../queries/stats.sql"),
            Stmt::TaskOutcome => include_str!("../queries/task_outcome.sql"),
            Stmt::Requeue => include_str!("../queries/requeue.sql"),
            Stmt::RequeueKey => include_str!("../queries/requeue_key.sql"),
            Stmt::JobData => include_str!("../queries/job_data.sql"),
            Stmt::Purge => include_str!("../queries/purge.sql"),
            Stmt::Cancel => include_str!("../queries/cancel.sql"),
            Stmt::Status => include_str!("../queries/status.sql"),
            Stmt::MetricsGauges => include_str!("../queries/metrics_gauges.sql"),
        }
    }

    fn arg_types(self) -> Vec<PgOid> {
        use pg_sys::BuiltinOid::*;
        let oids: &[pg_sys::BuiltinOid] = match self {
            Stmt::Put => &[TEXTOID, JSONBOID, TIMESTAMPTZOID, TIMESTAMPTZOID],
            Stmt::PutKeyed => &[TEXTOID, JSONBOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID],
            Stmt::PutMany => &[TEXTOID, JSONBARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID],
            Stmt::Candidates => &[
                TEXTOID,
                TIMESTAMPTZOID,
                INT8OID,
                TIMESTAMPTZOID,
                INT8OID,
                INT8OID,
                BOOLOID,
            ],
            Stmt::SqlTaskCandidates => &[TEXTOID, TIMESTAMPTZOID, INT8OID],
            Stmt::TaskPermit => &[OIDOID, OIDOID, OIDOID],
            Stmt::NextDue => &[TEXTOID, TIMESTAMPTZOID],
            Stmt::Len | Stmt::Clear => &[TEXTOID],
            Stmt::Claim => &[INT8OID],
            Stmt::Update => &[TEXTOID, INT8OID, JSONBOID],
            Stmt::Stats | Stmt::MetricsGauges => &[OIDOID],
            Stmt::TaskOutcome => &[INT8OID, JSONBOID, TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID],
            Stmt::Requeue | Stmt::RequeueKey | Stmt::JobData => &[INT8OID],
            Stmt::Purge => &[TIMESTAMPTZOID, INT8OID, BOOLOID],
            Stmt::Cancel | Stmt::Status => &[INT8OID, TIMESTAMPTZOID],
        };
        oids.iter().map(|o| PgOid::BuiltIn(*o)).collect()
    }
}

/// The columns a queue table must have, with their types: Python pq's layout.
const LAYOUT: &[(&str, pg_sys::BuiltinOid)] = &[
    ("id", pg_sys::BuiltinOid::INT8OID),
    ("enqueued_at", pg_sys::BuiltinOid::TIMESTAMPTZOID),
    ("dequeued_at", pg_sys::BuiltinOid::TIMESTAMPTZOID),
    ("expected_at", pg_sys::BuiltinOid::TIMESTAMPTZOID),
    ("schedule_at", pg_sys::BuiltinOid::TIMESTAMPTZOID),
    ("q_name", pg_sys::BuiltinOid::TEXTOID),
    ("data", pg_sys::BuiltinOid::JSONBOID),
];

/// The type of `column` of table `oid`, if it has one.
fn column_type(oid: pg_sys::Oid, column: &str) -> Option<pg_sys::Oid> {
    let cname = std::ffi::CString::new(column).expect("no NUL in a column name");
    // SAFETY: catalog lookups by OID and name.
    unsafe {
        let attnum = pg_sys::get_attnum(oid, cname.as_ptr());
        (attnum != pg_sys::InvalidAttrNumber as i16).then(|| pg_sys::get_atttype(oid, attnum))
    }
}

/// A checked queue table.
#[derive(Clone, Copy, Debug)]
pub struct QueueTable {
    pub oid: pg_sys::Oid,
    /// Whether the table has `enqueued_by` (0.3.0's layout). A table of an older layout, not yet
    /// upgraded by `ALTER EXTENSION pq UPDATE`, still puts and gets; its task jobs have no known
    /// enqueuer and are refused.
    pub has_enqueuer: bool,
    /// Whether the table has `key` and `cancelled_at` (0.5.0's layout), which unique jobs and
    /// cancelling need.
    pub has_key: bool,
    /// Its ready and scheduled indexes, which claims read directly (see `candidates`).
    pub indexes: Option<crate::queue::candidates::Indexes>,
}

thread_local! {
    /// Tables whose layout was checked in this backend, with what was found.
    static CHECKED: RefCell<HashMap<pg_sys::Oid, QueueTable>> = RefCell::new(HashMap::new());
    /// Saved plans by (table, statement); plancache replans them when the table changes.
    static PLANS: RefCell<HashMap<(pg_sys::Oid, Stmt), Rc<OwnedPreparedStatement>>> =
        RefCell::new(HashMap::new());
}

/// Forgets the layout checks and plans of the tables that changed (renamed, moved, altered,
/// dropped): the plans bake in the table's qualified name, which a RENAME or SET SCHEMA changes.
fn forget_stale() {
    if let Some(stale) =
        crate::plumbing::invalidation::take(crate::plumbing::invalidation::Cache::Tables)
    {
        CHECKED.with(|c| c.borrow_mut().retain(|oid, _| !stale(oid)));
        PLANS.with(|p| p.borrow_mut().retain(|(oid, _), _| !stale(oid)));
    }
}

impl QueueTable {
    /// Checks that `oid` (a `regclass` argument) is a table with the queue layout.
    ///
    /// ```ignore
    /// let t = QueueTable::resolve(tbl);   // raises 42809 for a table of another layout
    /// ```
    pub fn resolve(oid: Option<pg_sys::Oid>) -> QueueTable {
        let oid = crate::plumbing::error::require(oid, "tbl", "'queue'::regclass");
        forget_stale();
        if let Some(table) = CHECKED.with(|c| c.borrow().get(&oid).copied()) {
            return table;
        }
        let name = qualified_name(oid);
        let kind = unsafe { pg_sys::get_rel_relkind(oid) } as u8;
        if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_PARTITIONED_TABLE {
            raise(
                ERRCODE_WRONG_OBJECT_TYPE,
                format!("{name} is not a table"),
                "pass a queue table, e.g. tbl => 'queue', or create one with pq_create_table('jobs')",
            )
        }
        for (column, ty) in LAYOUT {
            if column_type(oid, column) != Some(pg_sys::Oid::from(*ty)) {
                raise(
                    ERRCODE_WRONG_OBJECT_TYPE,
                    format!("{name} is not a pq queue table: it lacks column {column} of the queue layout"),
                    "create queue tables with SELECT pq_create_table('jobs')",
                )
            }
        }
        let table = QueueTable {
            oid,
            has_enqueuer: column_type(oid, "enqueued_by") == Some(pg_sys::REGROLEOID),
            has_key: column_type(oid, "key") == Some(pg_sys::TEXTOID),
            indexes: crate::queue::candidates::find(oid),
        };
        CHECKED.with(|c| c.borrow_mut().insert(oid, table));
        table
    }

    /// Raises 0A000 unless the table has 0.5.0's columns (`key`, `cancelled_at`), which `what`
    /// needs.
    pub fn require_columns_of_0_5(&self, what: &str) {
        if !self.has_key {
            raise(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "queue table {} has no key and cancelled_at columns: {what} need pq 0.5.0's layout",
                    qualified_name(self.oid)
                ),
                "run ALTER EXTENSION pq UPDATE, which adds them to every queue table",
            )
        }
    }

    /// Runs `stmt` with `args` under the pinned settings, returning the first column of its
    /// first row (a count, an id, a queue name), or `None` when it returns no row.
    ///
    /// ```ignore
    /// let ready = table.one::<i64>(Stmt::Len, &["apples".into()]);
    /// ```
    pub fn one<T: FromDatum + IntoDatum>(&self, stmt: Stmt, args: &[DatumWithOid]) -> Option<T> {
        crate::plumbing::pinning::pinned(|p| {
            Spi::connect(|client| {
                self.with_plan(p, client, stmt, |plan| {
                    let rows = client
                        .select(plan, None, args)
                        .unwrap_or_else(|e| panic!("{stmt:?}: {e}"));
                    if rows.is_empty() {
                        None
                    } else {
                        rows.first()
                            .get_one::<T>()
                            .unwrap_or_else(|e| panic!("{stmt:?}: {e}"))
                    }
                })
            })
        })
    }

    /// Runs `f` with this table's prepared statement `stmt`, preparing it on first use.
    pub fn with_plan<R>(
        &self,
        _pinned: &Pinned,
        client: &SpiClient<'_>,
        stmt: Stmt,
        f: impl FnOnce(&OwnedPreparedStatement) -> R,
    ) -> R {
        let key = (self.oid, stmt);
        let cached = PLANS.with(|p| p.borrow().get(&key).cloned());
        let plan = cached.unwrap_or_else(|| {
            let enqueued_by = if self.has_enqueuer {
                "enqueued_by"
            } else {
                "'0'::regrole"
            };
            let mut sql = stmt
                .text()
                .replace("{table}", &qualified_name(self.oid))
                .replace("{enqueued_by}", enqueued_by)
                .replace(
                    "{cancelled_at}",
                    if self.has_key {
                        "cancelled_at"
                    } else {
                        "NULL::timestamptz"
                    },
                );
            if sql.contains("{registry}") {
                sql = sql.replace("{registry}", &crate::tasks::registry::registry_name());
            }
            let plan = client
                .prepare_mut(sql.as_str(), &stmt.arg_types())
                .unwrap_or_else(|e| panic!("preparing {stmt:?}: {e}"))
                .keep();
            let plan = Rc::new(plan);
            PLANS.with(|p| p.borrow_mut().insert(key, plan.clone()));
            plan
        });
        f(&plan)
    }
}

/// The extension's own table `name` in this database (`queue`, `pq_registered_tasks`,
/// `pq_queue_controls`, `pq_periodic`) and its owner, if the extension is created here and has
/// it. Only a table that is a member of the extension counts: before the version that adds
/// one, anyone with CREATE on the extension's schema could make a relation of that name (a
/// view calling their function, which every claim would run as its caller). Read from the
/// catalogs: no statement runs.
///
/// ```ignore
/// let (controls, _owner) = table::extension_relation("pq_queue_controls")?;
/// ```
pub fn extension_relation(name: &str) -> Option<(pg_sys::Oid, pg_sys::Oid)> {
    let (extension, schema) = extension_schema()?;
    let oid = relation_in(schema, name)?;
    // SAFETY: a catalog lookup.
    let member = unsafe { pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, oid) };
    if member != extension {
        return None;
    }
    crate::plumbing::catalog::with_class(oid, |c| (oid, c.relowner))
}

/// The pq extension of this database and its schema, if it is created here.
///
/// ```ignore
/// let (extension, schema) = table::extension_schema()?;
/// ```
pub fn extension_schema() -> Option<(pg_sys::Oid, pg_sys::Oid)> {
    let mut found = None;
    crate::plumbing::catalog::scan(
        pg_sys::ExtensionRelationId,
        pg_sys::ExtensionNameIndexId,
        pg_sys::Anum_pg_extension_extname,
        pg_sys::F_NAMEEQ,
        pg_sys::Datum::from(c"pq".as_ptr()),
        // SAFETY: a live pg_extension row.
        |row, _| {
            let form =
                unsafe { &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_extension>(row) };
            found = Some((form.oid, form.extnamespace));
        },
    );
    found
}

/// The plain table `name` in schema `schema`, if there is one.
///
/// ```ignore
/// let queue = table::relation_in(schema, "queue");
/// ```
pub fn relation_in(schema: pg_sys::Oid, name: &str) -> Option<pg_sys::Oid> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: syscache lookups.
    let oid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), schema) };
    (oid != pg_sys::InvalidOid
        && unsafe { pg_sys::get_rel_relkind(oid) } as u8 == pg_sys::RELKIND_RELATION)
        .then_some(oid)
}

/// Whether the current role holds privilege `mode` (`pg_sys::ACL_SELECT`, ...) on table `oid`.
///
/// ```ignore
/// if !table::may(table.oid, pg_sys::ACL_UPDATE) { /* 42501 */ }
/// ```
pub fn may(oid: pg_sys::Oid, mode: u32) -> bool {
    // SAFETY: a catalog check of the current user's rights.
    unsafe {
        pg_sys::pg_class_aclcheck(oid, pg_sys::GetUserId(), mode as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// Whether the current role holds privilege `mode` on table `oid` or on any of its columns.
pub fn may_some(oid: pg_sys::Oid, mode: u32) -> bool {
    // SAFETY: catalog checks of the current user's rights.
    may(oid, mode)
        || unsafe {
            pg_sys::pg_attribute_aclcheck_all(
                oid,
                pg_sys::GetUserId(),
                mode as pg_sys::AclMode,
                pg_sys::AclMaskHow::ACLMASK_ANY,
            ) == pg_sys::AclResult::ACLCHECK_OK
        }
}

/// Whether the current role may `SELECT` column `attnum` of table `oid` (a table-wide grant
/// or one on the column), as a `RETURNING` of it needs.
pub fn may_read_column(oid: pg_sys::Oid, attnum: i32) -> bool {
    // SAFETY: catalog checks of the current user's rights.
    may(oid, pg_sys::ACL_SELECT)
        || unsafe {
            pg_sys::pg_attribute_aclcheck(
                oid,
                attnum as i16,
                pg_sys::GetUserId(),
                pg_sys::ACL_SELECT as pg_sys::AclMode,
            ) == pg_sys::AclResult::ACLCHECK_OK
        }
}

/// Whether the current role holds USAGE on the schema of table `oid`, which the executor's
/// name lookup of the table would need.
pub fn may_reach(oid: pg_sys::Oid) -> bool {
    // SAFETY: catalog checks of the current user's rights.
    unsafe {
        let schema = pg_sys::get_rel_namespace(oid);
        #[cfg(feature = "pg15")]
        let r = pg_sys::pg_namespace_aclcheck(
            schema,
            pg_sys::GetUserId(),
            pg_sys::ACL_USAGE as pg_sys::AclMode,
        );
        #[cfg(not(feature = "pg15"))]
        let r = pg_sys::object_aclcheck(
            pg_sys::NamespaceRelationId,
            schema,
            pg_sys::GetUserId(),
            pg_sys::ACL_USAGE as pg_sys::AclMode,
        );
        r == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// `"schema"."table"` for `oid`, each part quoted by PostgreSQL's own `quote_identifier`.
pub fn qualified_name(oid: pg_sys::Oid) -> String {
    unsafe {
        let rel = pg_sys::get_rel_name(oid);
        if rel.is_null() {
            raise(
                ERRCODE_UNDEFINED_TABLE,
                format!("relation with OID {} does not exist", oid.to_u32()),
                "pass an existing queue table, e.g. tbl => 'queue'",
            )
        }
        let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid));
        let q = pg_sys::quote_qualified_identifier(nsp, rel);
        std::ffi::CStr::from_ptr(q).to_string_lossy().into_owned()
    }
}
