//! Reading with the newest snapshot rather than the transaction's, as PostgreSQL's foreign key
//! checks do: for the few reads that must see what other sessions committed even inside a
//! REPEATABLE READ transaction (a unique job's pending twin; a queue's controls are read the same
//! way without a statement, `catalog::scan_latest`).

use pgrx::prelude::*;

/// Runs the read-only statement `sql` (already pinned and qualified) with `args` (type, datum)
/// under the newest snapshot, calling `row` with a getter of each row's columns (1-based).
/// Must run under the pinned settings.
///
/// ```ignore
/// latest::select(sql, &[(pg_sys::TEXTOID, queue.into_datum().unwrap())], |col| ids.push(col(1)));
/// ```
pub fn select(
    sql: &str,
    args: &[(pg_sys::Oid, pg_sys::Datum)],
    mut row: impl FnMut(&dyn Fn(i32) -> Option<pg_sys::Datum>),
) {
    let sql = std::ffi::CString::new(sql).expect("no NUL in a statement");
    Spi::connect(|_| unsafe {
        // SAFETY: SPI is connected; the plan, its arguments and its result live until
        // SPI_freeplan and the end of this closure; rows are read within their tuple table.
        let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.0).collect();
        let plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() {
            let code = pg_sys::SPI_result;
            pgrx::error!("preparing a read with the newest snapshot: SPI error {code}");
        }
        let mut values: Vec<pg_sys::Datum> = args.iter().map(|a| a.1).collect();
        let mut nulls = vec![b' ' as std::ffi::c_char; args.len()];
        let rc = pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
            pg_sys::GetLatestSnapshot(),
            std::ptr::null_mut(),
            true,
            false,
            0,
        );
        if rc == pg_sys::SPI_OK_SELECT as i32 {
            let tt = pg_sys::SPI_tuptable;
            for i in 0..pg_sys::SPI_processed as usize {
                let tuple = *(*tt).vals.add(i);
                let get = |col: i32| {
                    let mut null = false;
                    let d = pg_sys::SPI_getbinval(tuple, (*tt).tupdesc, col, &mut null);
                    (!null).then_some(d)
                };
                row(&get);
            }
        }
        pg_sys::SPI_freeplan(plan);
    })
}
