//! Scratch memory: a memory context for work whose allocations die with it, deleted on drop.
//!
//! Its name is static: pgrx's `PgMemoryContexts::new` copies the name into the *caller's*
//! context, which a context made on every re-check of a blocking get leaked (about 40 bytes a
//! wake-up, found in review).

use pgrx::prelude::*;

/// A child of the current memory context, named `name`, deleted on drop (and with its parent
/// if an error unwinds past it).
pub struct Scratch(pg_sys::MemoryContext);

impl Scratch {
    /// Creates one under the current context.
    ///
    /// ```ignore
    /// let mut pass = Scratch::new(c"pq claim");
    /// let n = pass.run(|| read_candidates());
    /// pass.reset();
    /// ```
    pub fn new(name: &'static std::ffi::CStr) -> Scratch {
        // SAFETY: a plain context creation; the static name is never freed.
        Scratch(unsafe {
            pg_sys::AllocSetContextCreateExtended(
                pg_sys::CurrentMemoryContext,
                name.as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            )
        })
    }

    /// Runs `f` with this context current, restoring the caller's afterwards.
    ///
    /// # Safety
    /// Nothing `f` allocates in the current context may be used after [`Scratch::reset`] or
    /// the drop: what must outlive it goes to an explicit context or into Rust values.
    pub unsafe fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        /// Makes the caller's context current again, also when an error unwinds through `run`
        /// (pgrx's `switch_to` does not), so that the drop never deletes the current context.
        struct Restore(pg_sys::MemoryContext);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: the context that was current when `run` began, alive.
                unsafe { pg_sys::CurrentMemoryContext = self.0 };
            }
        }
        // SAFETY: switching contexts, as MemoryContextSwitchTo does.
        let _restore = Restore(unsafe { pg_sys::CurrentMemoryContext });
        unsafe { pg_sys::CurrentMemoryContext = self.0 };
        f()
    }

    /// Frees everything allocated in it so far.
    pub fn reset(&mut self) {
        // SAFETY: our own context; callers of `run` promised not to keep its memory.
        unsafe { pg_sys::MemoryContextReset(self.0) };
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: our own context, not current (run restores the caller's).
        unsafe { pg_sys::MemoryContextDelete(self.0) };
    }
}
