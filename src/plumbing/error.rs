//! Raising SQL errors with a fitting SQLSTATE.
//!
//! Every bad input is reported through [`raise`], so each error carries a code a client can
//! match on, a message naming the bad value, and a hint showing a valid form.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises an `ERROR` with `code`, `message` and `hint`; never returns.
///
/// ```ignore
/// error::raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
///              "queue name must not be empty".into(), "use a name such as 'apples'");
/// ```
pub fn raise(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    ErrorReport::new(code, cut(message), "pq")
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// The longest message [`raise`] sends: a message names the bad value, and a value may be
/// megabytes long (a 100 kB time spec came back whole).
const MAX_MESSAGE: usize = 1000;

/// `message`, cut to [`MAX_MESSAGE`] bytes at a character boundary, saying how long it was.
fn cut(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... (message cut, {} bytes)",
        &message[..end],
        message.len()
    )
}

/// Rejects a NULL or empty queue name, which would otherwise hit the table's CHECK
/// constraint with a less helpful message.
pub fn require_queue(queue: Option<&str>) -> &str {
    match queue {
        Some(q) if !q.is_empty() => q,
        Some(_) => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "queue name must not be empty".into(),
            "name the queue, e.g. pq_put('apples', '{\"kind\":\"Cox\"}')",
        ),
        None => raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "queue name must not be NULL".into(),
            "name the queue, e.g. pq_put('apples', '{\"kind\":\"Cox\"}')",
        ),
    }
}

/// The longest queue or schedule name a write accepts, in bytes: names are index keys, and a
/// B-tree entry holds at most about 2.7 kB (longer ones failed with PostgreSQL's 54000, which
/// does not name the value).
pub const MAX_NAME: usize = 1000;

/// [`require_queue`], for a call that writes the name (a put, a pause, a limit, a schedule):
/// also at most [`MAX_NAME`] bytes. Reads take any name, so a queue named before this limit
/// can still be drained.
///
/// ```ignore
/// let queue = error::require_new_queue(queue); // 22023 past 1000 bytes
/// ```
pub fn require_new_queue(queue: Option<&str>) -> &str {
    let queue = require_queue(queue);
    require_short(
        queue,
        MAX_NAME,
        "queue name",
        "name the queue, e.g. 'apples'",
    );
    queue
}

/// Raises 22023 when `value` (the `what` of a call) is longer than `max` bytes.
///
/// ```ignore
/// error::require_short(name, MAX_NAME, "a periodic job's name", "name it, e.g. 'nightly'");
/// ```
pub fn require_short(value: &str, max: usize, what: &str, hint: &str) {
    if value.len() > max {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "{what} {}... is {} bytes long, at most {max}",
                preview(value),
                value.len()
            ),
            hint,
        )
    }
}

/// The first 20 characters of a bad value, quoted, for a message that names it.
pub fn preview(value: &str) -> String {
    format!("{:?}", value.chars().take(20).collect::<String>())
}

/// Rejects a NULL argument other than the queue name.
pub fn require<T>(value: Option<T>, name: &str, example: &str) -> T {
    value.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{name} must not be NULL"),
            &format!("pass a value such as {example}"),
        )
    })
}

/// Rejects a count below 1 (or NULL) with 22023, naming the value.
///
/// ```ignore
/// let n = at_least_one(max_rows, "max_rows", "pass how many jobs to delete at most, e.g. 10000");
/// ```
pub fn at_least_one(value: Option<i32>, name: &str, hint: &str) -> i32 {
    match value {
        Some(n) if n >= 1 => n,
        other => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "{name} must be at least 1, got {}",
                other.map_or("NULL".into(), |n| n.to_string())
            ),
            hint,
        ),
    }
}
