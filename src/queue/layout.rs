//! Layout: what a queue table's definition lets pq write around the executor, for `dequeue`
//! (claims) and `enqueue` (puts).
//!
//! A claim's `UPDATE` and a put's `INSERT` cost more in executor start-up than in the write
//! itself (profiled: per statement the CHECK constraint parsed again, six index predicates
//! compiled, seven indexes opened, the row lock a BEFORE UPDATE trigger forces). On a table
//! as `pq_create_table` makes it, what those statements do is known, so pq can do it with the
//! heap and index access methods directly. This module decides, once per table and again after
//! any change to its definition or indexes, whether the table is such a table:
//!
//! - a plain heap table, not a partition, without rewrite rules, whose triggers are all pq's
//!   own `pq_stamp_enqueuer` as `pq_create_table` attaches it (found by its C entry point;
//!   BEFORE INSERT OR UPDATE, FOR EACH ROW, no WHEN), with no stored generated or identity
//!   column, and no CHECK but pq's `length(q_name) > 0`;
//! - every index a B-tree on plain columns (no expressions, no exclusion constraint, unique
//!   ones checked at once) whose predicate, if any, is made of null tests of columns and pq's
//!   SQL-task test `(data->>'function') LIKE '%)'`, both of which it evaluates itself.
//!
//! Puts further need defaults only on `id` (`nextval` of a sequence) and `enqueued_at`
//! (`now()`), with no other NOT NULL column they would leave NULL (`puttable`). Anything else
//! sends the write through SQL, where the executor does it all; so do `pq.direct_writes = off`,
//! an executor permission hook (sepgsql, pgaudit) and `session_replication_role = replica`.

use pgrx::prelude::*;
use pgrx::{PgList, PgTupleDesc};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Column numbers of a queue table's rows (1-based).
#[derive(Clone, Copy)]
pub struct Columns {
    pub id: i32,
    pub enqueued_at: i32,
    pub dequeued_at: i32,
    pub expected_at: i32,
    pub schedule_at: i32,
    pub q_name: i32,
    pub data: i32,
    pub enqueued_by: Option<i32>,
    pub key: Option<i32>,
}

/// One clause of an index predicate (they are ANDed).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clause {
    /// `column IS NULL` (true) or `column IS NOT NULL` (false).
    Null(i32, bool),
    /// `(data->>'function') LIKE '%)'`: a SQL task's job.
    SqlTask,
}

/// An index: its key columns, whether it is unique, and its predicate.
#[derive(Clone)]
pub struct Index {
    oid: pg_sys::Oid,
    columns: Vec<i16>,
    unique: bool,
    predicate: Vec<Clause>,
}

/// What a table's definition lets pq write directly.
#[derive(Clone)]
pub struct Layout {
    /// The table's indexes when it was classified, as the relcache lists them.
    oids: Vec<pg_sys::Oid>,
    indexes: Vec<Index>,
    pub columns: Columns,
    /// Puts may insert rows directly, drawing ids from this sequence.
    pub puttable: Option<pg_sys::Oid>,
}

static DIRECT_WRITES: pgrx::GucSetting<bool> = pgrx::GucSetting::<bool>::new(true);

/// Defines `pq.direct_writes`. Called from `_PG_init`.
pub fn init() {
    pgrx::GucRegistry::define_bool_guc(
        c"pq.direct_writes",
        c"Whether pq_put and pq_get write queue tables of pq's layout without an executor run.",
        c"off: every put and claim is an INSERT or UPDATE through the executor, seen by executor hooks (pgaudit, pg_stat_statements). Either way the result is the same.",
        &DIRECT_WRITES,
        pgrx::GucContext::Userset,
        pgrx::GucFlags::default(),
    );
}

thread_local! {
    /// Per table: its layout, or `None` when writes must go through SQL.
    static LAYOUTS: RefCell<HashMap<pg_sys::Oid, Option<Rc<Layout>>>> = RefCell::new(HashMap::new());
}

/// The layout of open table `rel`, if pq may write it directly.
///
/// # Safety
/// `rel` must be open (and locked) for the rest of the caller's use of the layout.
pub unsafe fn of(rel: pg_sys::Relation) -> Option<Rc<Layout>> {
    if !allowed_now() {
        return None;
    }
    unsafe {
        let oid = (*rel).rd_id;
        // Compared in place (the list is a palloc'd copy, freed with the caller's context).
        let indexes = PgList::<pg_sys::Oid>::from_pg(pg_sys::RelationGetIndexList(rel));
        if let Some(stale) =
            crate::plumbing::invalidation::take(crate::plumbing::invalidation::Cache::Layouts)
        {
            LAYOUTS.with(|l| {
                l.borrow_mut().retain(|t, layout| {
                    !stale(t) && !layout.as_ref().is_some_and(|l| l.oids.iter().any(&stale))
                })
            });
        }
        match LAYOUTS.with(|l| l.borrow().get(&oid).cloned()) {
            Some(layout)
                if layout
                    .as_ref()
                    .is_none_or(|l| indexes.iter_oid().eq(l.oids.iter().copied())) =>
            {
                layout
            }
            _ => {
                let layout = classify(rel, indexes.iter_oid().collect()).map(Rc::new);
                LAYOUTS.with(|l| l.borrow_mut().insert(oid, layout.clone()));
                layout
            }
        }
    }
}

/// Works out the layout of open table `rel`, whose indexes are `oids`.
unsafe fn classify(rel: pg_sys::Relation, oids: Vec<pg_sys::Oid>) -> Option<Layout> {
    unsafe {
        let form = &*(*rel).rd_rel;
        if (*rel).rd_tableam != pg_sys::GetHeapamTableAmRoutine()
            || form.relispartition
            || form.relkind as u8 != pg_sys::RELKIND_RELATION
            || form.relhasrules
            || form.relhassubclass
            || !only_pq_triggers(triggers(rel))
        {
            return None;
        }
        let desc = (*rel).rd_att;
        let columns = columns_of(desc)?;
        // pq's trigger refuses a table without `enqueued_by`, and stamps a superuser's write
        // of a NULL one: direct writes need the column, NOT NULL, wherever the trigger is.
        let stamped_by = columns.enqueued_by.is_some_and(|n| {
            PgTupleDesc::from_pg_unchecked(desc)
                .get(n as usize - 1)
                .is_some_and(|a| a.attnotnull)
        });
        if !triggers(rel).is_empty() && !stamped_by {
            return None;
        }
        let attrs = PgTupleDesc::from_pg_unchecked(desc);
        if attrs
            .iter()
            .any(|a| a.attgenerated != 0 || a.attidentity != 0)
        {
            return None;
        }
        let mut indexes = Vec::new();
        for &oid in &oids {
            if let Some(index) = index(oid, columns)? {
                indexes.push(index);
            }
        }
        // Only pq's own CHECK, which neither a claim (q_name unchanged, the constraint valid)
        // nor a put (its queue name checked non-empty first) can break; any other might read
        // the row in ways not worth proving (a whole-row reference, a function, NOT VALID).
        let checks_ours = checks(desc)
            .iter()
            .all(|&(c, valid)| valid && is_pq_check(c, columns.q_name));
        if !checks_ours {
            return None;
        }
        let puttable = put_defaults(desc, columns).filter(|_| pq_trigger_fires(triggers(rel)));
        Some(Layout {
            oids,
            indexes,
            columns,
            puttable,
        })
    }
}

/// The queue layout's columns in descriptor `desc`, each checked to be of its type with no
/// typmod: read under the table's lock, since `QueueTable::resolve` checked a definition that
/// may have changed since (a datum of another type written as this one could crash the server).
///
/// # Safety
/// `desc` is the descriptor of a table open and locked by the caller.
pub unsafe fn columns_of(desc: pg_sys::TupleDesc) -> Option<Columns> {
    unsafe {
        let attrs = PgTupleDesc::from_pg_unchecked(desc);
        let col = |name: &std::ffi::CStr, ty: pg_sys::Oid| {
            let n = pg_sys::SPI_fnumber(desc, name.as_ptr());
            let a = attrs.get((n - 1) as usize).filter(|_| n > 0)?;
            (a.atttypid == ty && a.atttypmod == -1 && !a.attisdropped).then_some(n)
        };
        let ts = pg_sys::TIMESTAMPTZOID;
        Some(Columns {
            id: col(c"id", pg_sys::INT8OID)?,
            enqueued_at: col(c"enqueued_at", ts)?,
            dequeued_at: col(c"dequeued_at", ts)?,
            expected_at: col(c"expected_at", ts)?,
            schedule_at: col(c"schedule_at", ts)?,
            q_name: col(c"q_name", pg_sys::TEXTOID)?,
            data: col(c"data", pg_sys::JSONBOID)?,
            enqueued_by: col(c"enqueued_by", pg_sys::REGROLEOID),
            key: col(c"key", pg_sys::TEXTOID),
        })
    }
}

/// Whether pq may write directly in this session now: not turned off, no executor permission
/// hook to satisfy (sepgsql, pgaudit's object audit), and triggers firing as on an origin
/// (`session_replication_role = replica` would skip pq's, which a direct write cannot).
pub fn allowed_now() -> bool {
    // SAFETY: plain globals.
    DIRECT_WRITES.get()
        && unsafe { pg_sys::ExecutorCheckPerms_hook }.is_none()
        && unsafe { pg_sys::SessionReplicationRole }
            != pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32
}

/// Whether every trigger on the table is `pq_stamp_enqueuer()` (whatever its schema or name)
/// as `pq_create_table` attaches it: BEFORE INSERT OR UPDATE, FOR EACH ROW, without WHEN.
fn only_pq_triggers(triggers: &[pg_sys::Trigger]) -> bool {
    let ours = crate::tasks::enqueuer::pq_stamp_enqueuer_wrapper as *const () as usize;
    let shape = (pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_BEFORE) as i16;
    let other = (pg_sys::TRIGGER_TYPE_DELETE
        | pg_sys::TRIGGER_TYPE_TRUNCATE
        | pg_sys::TRIGGER_TYPE_INSTEAD) as i16;
    triggers.iter().all(|t| {
        if t.tgtype & shape != shape || t.tgtype & other != 0 || !t.tgqual.is_null() {
            return false;
        }
        // SAFETY: looks the function up by OID, as the executor would to call it.
        let mut finfo: pg_sys::FmgrInfo = unsafe { std::mem::zeroed() };
        unsafe { pg_sys::fmgr_info(t.tgfoid, &mut finfo) };
        finfo.fn_addr.map(|f| f as usize) == Some(ours)
    })
}

/// Whether pq's trigger is on the table and enabled (`O` or `A`) for inserts: a put does its
/// work, which without it would not be done (and `enqueued_by` would stay NULL).
fn pq_trigger_fires(triggers: &[pg_sys::Trigger]) -> bool {
    triggers.iter().any(|t| {
        let insert = t.tgtype as u32 & pg_sys::TRIGGER_TYPE_INSERT != 0;
        let enabled = t.tgenabled as u8 == pg_sys::TRIGGER_FIRES_ON_ORIGIN
            || t.tgenabled as u8 == pg_sys::TRIGGER_FIRES_ALWAYS;
        insert && enabled
    })
}

/// The triggers of open table `rel` (none when it has no trigger descriptor).
unsafe fn triggers<'a>(rel: pg_sys::Relation) -> &'a [pg_sys::Trigger] {
    unsafe {
        let desc = (*rel).trigdesc;
        if desc.is_null() {
            return &[];
        }
        std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize)
    }
}

/// The table's CHECK constraints, parsed, with whether each is validated.
unsafe fn checks(desc: pg_sys::TupleDesc) -> Vec<(*mut pg_sys::Node, bool)> {
    unsafe {
        let constr = (*desc).constr;
        if constr.is_null() || (*constr).num_check == 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts((*constr).check, (*constr).num_check as usize)
            .iter()
            .map(|c| {
                (
                    pg_sys::stringToNode(c.ccbin) as *mut pg_sys::Node,
                    c.ccvalid,
                )
            })
            .collect()
    }
}

/// Whether `node` is pq's own CHECK, `length(q_name) > 0`, which every put passes: its queue
/// name is checked non-empty first (`require_queue`).
unsafe fn is_pq_check(node: *mut pg_sys::Node, q_name: i32) -> bool {
    unsafe {
        let Some([length, zero]) = op_args(node, pg_sys::F_INT4GT) else {
            return false;
        };
        let is_zero = (*zero).type_ == pg_sys::NodeTag::T_Const && {
            let c = zero as *mut pg_sys::Const;
            !(*c).constisnull && (*c).constvalue.value() as i32 == 0
        };
        let is_length = (*length).type_ == pg_sys::NodeTag::T_FuncExpr && {
            let f = length as *mut pg_sys::FuncExpr;
            let f_id = u32::from((*f).funcid);
            let args = PgList::<pg_sys::Node>::from_pg((*f).args);
            (f_id == pg_sys::F_LENGTH_TEXT || f_id == pg_sys::F_TEXTLEN)
                && args.len() == 1
                && var_of(args.get_ptr(0).expect("one argument")) == Some(q_name)
        };
        is_zero && is_length
    }
}

/// The column a `Var` reads, if `node` is one.
unsafe fn var_of(node: *mut pg_sys::Node) -> Option<i32> {
    unsafe {
        (!node.is_null() && (*node).type_ == pg_sys::NodeTag::T_Var)
            .then(|| (*(node as *mut pg_sys::Var)).varattno as i32)
    }
}

/// The two arguments of `node`, if it is a binary operator calling function `func`.
unsafe fn op_args(node: *mut pg_sys::Node, func: u32) -> Option<[*mut pg_sys::Node; 2]> {
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_OpExpr {
            return None;
        }
        let op = node as *mut pg_sys::OpExpr;
        let args = PgList::<pg_sys::Node>::from_pg((*op).args);
        (u32::from((*op).opfuncid) == func && args.len() == 2)
            .then(|| [args.get_ptr(0).expect("two"), args.get_ptr(1).expect("two")])
    }
}

/// The text of `node`, if it is a non-null text constant.
unsafe fn text_const(node: *mut pg_sys::Node) -> Option<String> {
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let c = node as *mut pg_sys::Const;
        ((*c).consttype == pg_sys::TEXTOID && !(*c).constisnull)
            .then(|| String::from_datum((*c).constvalue, false))
            .flatten()
    }
}

/// The sequence a put draws ids from, if the only defaults are `id`'s `nextval(seq)` and
/// `enqueued_at`'s `now()`, and no column a put leaves NULL is NOT NULL or of a domain.
unsafe fn put_defaults(desc: pg_sys::TupleDesc, cols: Columns) -> Option<pg_sys::Oid> {
    unsafe {
        let constr = (*desc).constr;
        if constr.is_null() {
            return None; // no default for id
        }
        let defaults = std::slice::from_raw_parts((*constr).defval, (*constr).num_defval as usize);
        let mut sequence = None;
        let mut stamped = false;
        for d in defaults {
            let expr = pg_sys::stringToNode(d.adbin) as *mut pg_sys::Node;
            let func = ((*expr).type_ == pg_sys::NodeTag::T_FuncExpr)
                .then_some(expr as *mut pg_sys::FuncExpr)?;
            let args = PgList::<pg_sys::Node>::from_pg((*func).args);
            match (d.adnum as i32, u32::from((*func).funcid)) {
                (n, pg_sys::F_NEXTVAL) if n == cols.id && args.len() == 1 => {
                    let arg = args.get_ptr(0).expect("one argument");
                    if (*arg).type_ != pg_sys::NodeTag::T_Const {
                        return None;
                    }
                    let c = arg as *mut pg_sys::Const;
                    if (*c).constisnull || (*c).consttype != pg_sys::REGCLASSOID {
                        return None;
                    }
                    sequence = Some(pg_sys::Oid::from((*c).constvalue.value() as u32));
                }
                (n, pg_sys::F_NOW) if n == cols.enqueued_at && args.is_empty() => stamped = true,
                _ => return None,
            }
        }
        // A put writes id, enqueued_at, q_name, data, enqueued_by, and schedule_at and
        // expected_at when given; every other column is left NULL.
        let written = [cols.id, cols.enqueued_at, cols.q_name, cols.data];
        let attrs = PgTupleDesc::from_pg_unchecked(desc);
        // A NULL the executor would refuse: a NOT NULL column, or a domain (its constraints
        // are checked on the NULL default too).
        let refuses_null = attrs.iter().enumerate().any(|(i, a)| {
            let n = i as i32 + 1;
            !a.attisdropped
                && !written.contains(&n)
                && Some(n) != cols.enqueued_by
                && (a.attnotnull || pg_sys::get_typtype(a.atttypid) as u8 == pg_sys::TYPTYPE_DOMAIN)
        });
        if refuses_null || !stamped {
            return None;
        }
        sequence
    }
}

/// How a claim or put treats index `oid`: `Some(Some(index))` with its predicate,
/// `Some(None)` never (being built), `None` an index pq does not write itself.
unsafe fn index(oid: pg_sys::Oid, cols: Columns) -> Option<Option<Index>> {
    unsafe {
        let rel = pg_sys::index_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let index = (|| {
            let form = &*(*rel).rd_index;
            if !form.indisready {
                return Some(None); // being built: the executor skips it too
            }
            let btree = (*(*rel).rd_rel).relam == pg_sys::BTREE_AM_OID;
            let plain = pg_sys::RelationGetIndexExpressions(rel).is_null();
            if !btree || !plain || form.indisexclusion || (form.indisunique && !form.indimmediate) {
                return None;
            }
            let columns = form.indkey.values.as_slice(form.indnatts as usize).to_vec();
            if columns.iter().any(|&k| k <= 0) {
                return None;
            }
            let mut predicate = Vec::new();
            for clause in
                PgList::<pg_sys::Node>::from_pg(pg_sys::RelationGetIndexPredicate(rel)).iter_ptr()
            {
                predicate.push(clause_of(clause, cols)?);
            }
            // Null tests first: they decide most rows without reading the payload.
            predicate.sort_by_key(|c| matches!(c, Clause::SqlTask));
            Some(Some(Index {
                oid,
                columns,
                unique: form.indisunique,
                predicate,
            }))
        })();
        pg_sys::index_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        index
    }
}

/// `column IS [NOT] NULL` as (column, whether IS NULL), if `node` is such a test of a column.
unsafe fn null_test(node: *mut pg_sys::Node) -> Option<(i16, bool)> {
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_NullTest {
            return None;
        }
        let test = node as *mut pg_sys::NullTest;
        if (*test).argisrow {
            return None;
        }
        let attno = var_of((*test).arg as *mut pg_sys::Node)?;
        Some((
            attno as i16,
            (*test).nulltesttype == pg_sys::NullTestType::IS_NULL,
        ))
    }
}

/// The null tests an index predicate (`pg_index.indpred`, parsed) is made of, if it is only
/// those, ANDed: what `candidates::find` looks for.
///
/// # Safety
/// `node` is a parsed expression tree (or null).
///
/// ```ignore
/// let tests = layout::null_tests(node); // Some([(3, true), (5, true)])
/// ```
pub unsafe fn null_tests(node: *mut pg_sys::Node) -> Option<Vec<(i16, bool)>> {
    unsafe {
        if !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_BoolExpr {
            let and = node as *mut pg_sys::BoolExpr;
            if (*and).boolop != pg_sys::BoolExprType::AND_EXPR {
                return None;
            }
            return PgList::<pg_sys::Node>::from_pg((*and).args)
                .iter_ptr()
                .map(|n| null_test(n))
                .collect();
        }
        null_test(node).map(|t| vec![t])
    }
}

/// A predicate clause this module evaluates itself, if `node` is one.
unsafe fn clause_of(node: *mut pg_sys::Node, cols: Columns) -> Option<Clause> {
    unsafe {
        if let Some((attno, is_null)) = null_test(node) {
            return Some(Clause::Null(attno as i32, is_null));
        }
        // (data ->> 'function') ~~ '%)'
        let [field, pattern] = op_args(node, pg_sys::F_TEXTLIKE)?;
        let [data, name] = op_args(field, pg_sys::F_JSONB_OBJECT_FIELD_TEXT)?;
        (var_of(data) == Some(cols.data)
            && text_const(name).as_deref() == Some("function")
            && text_const(pattern).as_deref() == Some("%)"))
        .then_some(Clause::SqlTask)
    }
}

impl Layout {
    /// Adds row version `row` (just written at `(*row).t_self` in open table `rel`) to every
    /// index whose predicate it satisfies, as `ExecInsertIndexTuples` would. `unchanged`:
    /// columns an update left alone (the executor's hint for bottom-up deletion).
    ///
    /// # Safety
    /// `rel` is the open table this layout is of, and `row` a tuple of its descriptor.
    pub unsafe fn insert_entries(
        &self,
        rel: pg_sys::Relation,
        row: pg_sys::HeapTuple,
        unchanged: impl Fn(i16) -> bool,
    ) {
        unsafe {
            let desc = (*rel).rd_att;
            let get = |attno: i32| {
                let mut null = false;
                let d = pg_sys::heap_getattr(row, attno, desc, &mut null);
                (d, null)
            };
            let mut sql_task = None;
            for index in &self.indexes {
                let admits = index.predicate.iter().all(|clause| match *clause {
                    Clause::Null(attno, is_null) => get(attno).1 == is_null,
                    Clause::SqlTask => *sql_task.get_or_insert_with(|| {
                        let (data, null) = get(self.columns.data);
                        !null && is_sql_task(data)
                    }),
                });
                if !admits {
                    continue;
                }
                let rel_index =
                    pg_sys::index_open(index.oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
                let info = pg_sys::BuildIndexInfo(rel_index);
                let (mut values, mut nulls): (Vec<_>, Vec<_>) =
                    index.columns.iter().map(|&a| get(a as i32)).unzip();
                let check = if index.unique {
                    pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
                } else {
                    pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
                };
                let mut tid = (*row).t_self;
                pg_sys::index_insert(
                    rel_index,
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                    &mut tid,
                    rel,
                    check,
                    index.columns.iter().all(|&c| unchanged(c)),
                    info,
                );
                #[cfg(any(feature = "pg17", feature = "pg18"))]
                pg_sys::index_insert_cleanup(rel_index, info);
                pg_sys::index_close(rel_index, pg_sys::NoLock as pg_sys::LOCKMODE);
            }
        }
    }
}

/// `(data->>'function') LIKE '%)'` for jsonb datum `data`: a SQL task's job. Compared as
/// bytes (`)` is one byte in every server encoding), so a database that is not UTF-8 is fine.
unsafe fn is_sql_task(data: pg_sys::Datum) -> bool {
    unsafe {
        let function = pgrx::direct_function_call_as_datum(
            pg_sys::jsonb_object_field_text,
            &[Some(data), "function".into_datum()],
        );
        function.is_some_and(|f| {
            let text = pg_sys::pg_detoast_datum_packed(f.cast_mut_ptr());
            pgrx::varlena::varlena_to_byte_slice(text).last() == Some(&b')')
        })
    }
}
