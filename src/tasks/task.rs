//! Tasks: jobs that name a SQL function to call, in Python pq's task shape, so both agree:
//! `{"function": "public.eat(text)", "args": ["Cox"], "kwargs": {}, "retried": 0,
//! "max_retries": 2, "retry_in": "10s"}`.
//!
//! A SQL task's `function` is a function signature as `regprocedure` prints it, schema
//! qualified: it always ends in `)`. Python and Rust handlers are named `module.eat`, without
//! parentheses; `pq_work` takes only jobs whose `function` ends in `)` and leaves the others
//! for client workers, even in the same queue.

use crate::plumbing::error::{raise, require, require_new_queue};
use crate::plumbing::pinning::pinned;
use crate::plumbing::table::QueueTable;
use crate::queue::timespec::{resolve_opt, TimeSpec};
use pgrx::datum::JsonB;
use pgrx::direct_function_call;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A task job's data.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Task {
    pub function: String,
    #[serde(default)]
    pub args: Vec<Value>,
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    #[serde(default)]
    pub retried: i64,
    #[serde(default)]
    pub max_retries: i64,
    #[serde(default = "default_retry_in")]
    pub retry_in: String,
    /// This task's time limit (`"30s"`); without it, `pq.task_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `"exponential"`: retries back off (see `backoff`); without it, every retry waits
    /// `retry_in`, as in Python pq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// The longest wait between retries with `backoff` (default one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max: Option<String>,
}

fn default_retry_in() -> String {
    "30s".into()
}

/// A call of a task's function, ready to prepare: `SELECT f(CAST($1 AS int), x => CAST($2 AS text))`
/// with every argument passed as text.
pub struct Call {
    pub sql: String,
    /// Just the casts (`SELECT CAST($1 AS int), ...`): checks the arguments convert.
    pub casts_sql: String,
    pub args: Vec<Option<String>>,
}

/// Builds the call of `function` (an oid) with `args` and `kwargs`. Runs under the pinned
/// search_path; raises for procedures and for more positional arguments than parameters.
pub fn build_call(client: &SpiClient<'_>, function: pg_sys::Oid, task: &Task) -> Call {
    let row = client
        .select(
            include_str!("../queries/task_function.sql"),
            None,
            &[function.into()],
        )
        .unwrap_or_else(|e| panic!("reading function {}: {e}", function.to_u32()));
    let row = row.first();
    let name: String = row.get(1).ok().flatten().expect("function name");
    let kind: String = row.get(2).ok().flatten().unwrap_or_default();
    let types: Vec<String> = row.get(4).ok().flatten().unwrap_or_default();
    let oids: Vec<pg_sys::Oid> = row.get(5).ok().flatten().unwrap_or_default();
    if kind != "f" {
        raise(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "task function {} is not a plain function (prokind '{kind}')",
                task.function
            ),
            "tasks call functions; wrap a procedure or aggregate in a function",
        )
    }
    if task.args.len() > types.len() {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "task function {} takes {} arguments, got {} positional",
                task.function,
                types.len(),
                task.args.len()
            ),
            "pass as many args as the function has parameters, e.g. args => '[\"Cox\"]'",
        )
    }
    let mut exprs = Vec::new();
    let mut casts = Vec::new();
    let mut args = Vec::new();
    for (i, value) in task.args.iter().enumerate() {
        args.push(to_text(value, oids[i]));
        let cast = format!("CAST(${} AS {})", args.len(), types[i]);
        exprs.push(cast.clone());
        casts.push(cast);
    }
    let names: Vec<String> = row.get(3).ok().flatten().unwrap_or_default();
    for (key, value) in &task.kwargs {
        let Some(i) = names.iter().position(|n| n == key) else {
            raise(
                ERRCODE_UNDEFINED_PARAMETER,
                format!(
                    "task function {} has no parameter named {key:?}",
                    task.function
                ),
                &format!("its parameters are: {}", names.join(", ")),
            )
        };
        args.push(to_text(value, oids[i]));
        let cast = format!("CAST(${} AS {})", args.len(), types[i]);
        exprs.push(format!("{} => {cast}", quote_ident(key)));
        casts.push(cast);
    }
    Call {
        // Rows are counted as they come, never kept: a set-returning task cannot fill memory.
        // Counting the value keeps the planner from dropping a call it thinks has no effect.
        sql: format!(
            "SELECT count(r) FROM (SELECT {name}({}) AS r) AS t",
            exprs.join(", ")
        ),
        casts_sql: format!(
            "SELECT {}",
            if casts.is_empty() {
                "1".into()
            } else {
                casts.join(", ")
            }
        ),
        args,
    }
}

/// Executes `sql` with text arguments; returns nothing (a task's result is not kept).
pub fn run(client: &SpiClient<'_>, sql: &str, args: &[Option<String>]) {
    let args: Vec<_> = args.iter().map(|a| a.as_deref().into()).collect();
    client
        .select(sql, None, &args)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A JSON value as the text input of a parameter of type `ty`: JSON for json/jsonb, an array
/// literal for arrays, a string's contents, and numbers and booleans as written.
fn to_text(value: &Value, ty: pg_sys::Oid) -> Option<String> {
    if ty == pg_sys::JSONOID || ty == pg_sys::JSONBOID {
        return Some(value.to_string());
    }
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if unsafe { pg_sys::get_element_type(ty) } != pg_sys::InvalidOid => {
            Some(array_literal(items))
        }
        other => Some(other.to_string()),
    }
}

/// `["a", 1, null, [2]]` as `{"a","1",NULL,{"2"}}`.
fn array_literal(items: &[Value]) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let parts: Vec<String> = items
        .iter()
        .map(|v| match v {
            Value::Null => "NULL".into(),
            Value::Array(inner) => array_literal(inner),
            Value::String(s) => quote(s),
            other => quote(&other.to_string()),
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The oid of a function named as `regprocedure` (`'eat(text)'`) or, without parentheses, a
/// unique `regproc` name (`'eat'`), resolved in the caller's search_path.
pub fn resolve_function(name: &str) -> pg_sys::Oid {
    let input = if name.contains('(') {
        pg_sys::regprocedurein
    } else {
        pg_sys::regprocin
    };
    let cstr = std::ffi::CString::new(name).unwrap_or_else(|_| {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "function name holds a NUL byte".into(),
            "use a name such as 'eat(text)'",
        )
    });
    unsafe { direct_function_call::<pg_sys::Oid>(input, &[cstr.as_c_str().into_datum()]) }
        .expect("regproc input never returns NULL")
}

/// Refuses to enqueue a task the caller could not have run: the function must be registered
/// (`pq_register_task`) and the caller allowed to execute it. Runs under the pinned path.
fn check_enqueue(function: pg_sys::Oid) {
    let row = Spi::get_two_with_args::<bool, bool>(
        &include_str!("../queries/task_enqueue_check.sql")
            .replace("{registry}", &crate::tasks::registry::registry_name()),
        &[function.into(), unsafe { pg_sys::GetUserId() }.into()],
    );
    let (registered, allowed) = match row {
        Ok((Some(r), Some(a))) => (r, a),
        other => panic!("checking task function: {other:?}"),
    };
    let name = signature(function);
    if !registered {
        raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("function {name} is not registered as a task"),
            &format!(
                "its owner (or a superuser) can register it: SELECT pq_register_task('{name}')"
            ),
        )
    }
    if !allowed {
        raise(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to enqueue task {name}: you may not execute it"),
            "ask for GRANT EXECUTE on the function; a task runs as the role that enqueued it",
        )
    }
}

/// `public.eat(text)`: a function's signature, schema-qualified unless in pg_catalog (printed
/// under the pinned search_path).
pub fn signature(oid: pg_sys::Oid) -> String {
    unsafe { direct_function_call::<&std::ffi::CStr>(pg_sys::regprocedureout, &[oid.into_datum()]) }
        .expect("regprocedure output")
        .to_string_lossy()
        .into_owned()
}

/// Enqueues a task job calling `function` with `args` and `kwargs`, checked now: the
/// function must be registered (`pq_register_task`), the caller allowed to execute it, and
/// every argument must convert to its parameter's type. The task will run as the caller. With `external`,
/// `function` names a client handler (Python's `module.eat`, a Rust task name) and is stored
/// as given, for a client worker.
///
/// ```sql
/// SELECT pq_register_task('eat(text)');
/// SELECT pq_put_task('default', 'eat(text)', '["Cox"]', max_retries => 2, retry_in => '10s');
/// SELECT pq_put_task('default', 'eat(text)', '["Cox"]', timeout => '30s');
/// SELECT pq_put_task('default', 'eat(text)', '["Cox"]', max_retries => 5, backoff => 'exponential');
/// SELECT pq_put_task('default', 'eat(text)', '["Cox"]', key => 'cox-of-the-day');
/// SELECT pq_put_task('py', 'tasks.eat', '["Cox"]', external => true);
/// ```
#[pg_extern(sql = false)]
#[allow(clippy::too_many_arguments)]
fn pq_put_task(
    queue: Option<&str>,
    function: Option<&str>,
    args: Option<JsonB>,
    kwargs: Option<JsonB>,
    schedule_at: Option<&str>,
    expected_at: Option<&str>,
    max_retries: Option<i32>,
    retry_in: Option<&str>,
    tbl: Option<pg_sys::Oid>,
    external: Option<bool>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> i64 {
    // `timeout text` (0.3.0) and `key`, `backoff`, `retry_max` (0.5.0) are read by hand: older
    // declarations call this symbol with fewer arguments until ALTER EXTENSION pq UPDATE.
    // SAFETY: an argument is read only when the caller passed it.
    let text_arg = |i: usize| -> Option<String> {
        unsafe {
            ((*fcinfo).nargs as usize > i)
                .then(|| pgrx::fcinfo::pg_getarg::<String>(fcinfo, i))
                .flatten()
        }
    };
    let (timeout, key) = (text_arg(10), text_arg(11));
    let (backoff, retry_max) = (text_arg(12), text_arg(13));
    let timeout = timeout.as_deref();
    crate::tasks::backoff::check(backoff.as_deref(), retry_max.as_deref());
    let queue = require_new_queue(queue);
    let function = require(function, "function", "'eat(text)'");
    let args = match require(args, "args", "'[\"Cox\"]'").0 {
        Value::Array(a) => a,
        other => raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("args must be a JSON array, got {other}"),
            "pass positional arguments as an array, e.g. '[\"Cox\", 3]'",
        ),
    };
    let kwargs = match require(kwargs, "kwargs", "'{}'").0 {
        Value::Object(m) => m,
        other => raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("kwargs must be a JSON object, got {other}"),
            "pass named arguments as an object, e.g. '{\"kind\": \"Cox\"}'",
        ),
    };
    let max_retries = require(max_retries, "max_retries", "3");
    if max_retries < 0 {
        raise(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("max_retries must not be negative, got {max_retries}"),
            "pass 0 for no retries, or a count such as 3",
        )
    }
    let retry_in = require(retry_in, "retry_in", "'30s'");
    retry_in.resolve("retry_in"); // checked now, applied at each failure
    if let Some(t) = timeout {
        if crate::queue::timespec::duration(t).is_err() {
            raise(
                ERRCODE_INVALID_DATETIME_FORMAT,
                format!("invalid task timeout {t:?}: not a duration"),
                "pass a duration such as '30s' or '5m', or leave it out for pq.task_timeout",
            )
        }
    }
    let table = QueueTable::resolve(tbl);
    let schedule_at = resolve_opt(schedule_at, "schedule_at");
    let expected_at = resolve_opt(expected_at, "expected_at");
    let task = |function: String| Task {
        function,
        args: args.clone(),
        kwargs: kwargs.clone(),
        retried: 0,
        max_retries: max_retries as i64,
        retry_in: retry_in.to_string(),
        timeout: timeout.map(str::to_string),
        backoff: backoff.clone(),
        retry_max: retry_max.clone(),
    };
    let insert = |task: &Task| {
        let data = JsonB(serde_json::to_value(task).expect("a task serializes"));
        crate::queue::put::insert(
            &table,
            queue,
            data.into(),
            schedule_at,
            expected_at,
            key.as_deref(),
        )
    };
    if external.unwrap_or(false) {
        if function.contains('(') {
            raise(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("client handler names have no parentheses, got {function:?}"),
                "name it as the client registers it, e.g. 'tasks.eat'; SQL functions need no external => true",
            )
        }
        return insert(&task(function.to_string()));
    }
    let oid = resolve_function(function);
    pinned(|_| {
        check_enqueue(oid);
        let task = task(signature(oid));
        Spi::connect(|client| {
            let call = build_call(client, oid, &task);
            // Prepare the call (resolves the function and named arguments) and run the casts.
            client
                .prepare(
                    call.sql.as_str(),
                    &vec![PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTOID); call.args.len()],
                )
                .unwrap_or_else(|e| panic!("{}: {e}", call.sql));
            run(client, &call.casts_sql, &call.args);
        });
        insert(&task)
    })
}
