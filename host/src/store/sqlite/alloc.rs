//! SQLite's own allocations on mimalloc, and without its memory statistics.
//!
//! The bundled SQLite allocates with the C library's `malloc` and, to keep
//! its memory statistics, takes a global mutex around every allocation.
//! Under `perf` on `cargo bench --bench wrk_throughput`, glibc's allocator
//! (`malloc`, `malloc_consolidate`, `unlink_chunk`) and that mutex were a
//! fifth of the store's writer thread. The server reads no SQLite memory
//! statistics. SQLite's memory is bounded (a page cache per connection), so
//! mimalloc keeping freed pages a while costs little here; for the whole
//! server it did not pay (see `tune_allocator` in `main.rs`).
//!
//! SQLite takes this configuration only before it is first initialised, so
//! [`install`] runs before the stores open their first connection; when
//! something opened one earlier, SQLite keeps its defaults (and says so in
//! the debug log), which are correct, only slower.

use std::ffi::{c_int, c_void};
use std::sync::Once;

use libmimalloc_sys as mi;
use rusqlite::ffi;

/// `mi_option_arena_eager_commit` (mimalloc.h).
const ARENA_EAGER_COMMIT: mi::mi_option_t = 4;

unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
    // SAFETY: any size may be asked of mi_malloc; SQLite never asks < 0.
    unsafe { mi::mi_malloc(usize::try_from(n).unwrap_or(0)) }
}

unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: `p` came from `malloc`/`realloc` above (SQLite's contract).
    unsafe { mi::mi_free(p) }
}

unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as `free`; mi_realloc keeps the contents.
    unsafe { mi::mi_realloc(p, usize::try_from(n).unwrap_or(0)) }
}

unsafe extern "C" fn size(p: *mut c_void) -> c_int {
    // SAFETY: as `free`.
    let n = unsafe { mi::mi_usable_size(p) };
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn roundup(n: c_int) -> c_int {
    // SQLite asks for 8-byte multiples; mimalloc's blocks are at least that.
    n.saturating_add(7) & !7
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}

/// Give SQLite mimalloc and turn its memory statistics off, once per
/// process, before its first connection.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Commit mimalloc's arenas as they are used, not when reserved: the
        // resident set then tracks what SQLite holds.
        // SAFETY: setting an option is allowed at any time.
        unsafe { mi::mi_option_set(ARENA_EAGER_COMMIT, 0) };
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: sqlite3_config copies the struct; it refuses (MISUSE)
        // once SQLite is initialised, changing nothing then.
        let statistics_off =
            unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
        // SAFETY: as above.
        let allocator = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_MALLOC,
                &methods as *const ffi::sqlite3_mem_methods,
            )
        };
        if let Some(rc) = [statistics_off, allocator]
            .into_iter()
            .find(|rc| *rc != ffi::SQLITE_OK)
        {
            tracing::debug!(
                rc,
                "SQLite was initialised already: it keeps its own allocator"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The methods SQLite calls behave as its allocator contract says.
    #[test]
    fn the_methods_keep_sqlites_contract() {
        // SAFETY: each pointer comes from the methods under test.
        unsafe {
            let p = malloc(100);
            assert!(!p.is_null());
            assert_eq!(p as usize % 8, 0, "8-byte aligned");
            assert!(size(p) >= 100);
            std::ptr::write_bytes(p.cast::<u8>(), 0xab, 100);
            let q = realloc(p, 5000);
            assert!(size(q) >= 5000);
            assert_eq!(*q.cast::<u8>().add(99), 0xab, "realloc keeps the contents");
            free(q);
        }
        assert_eq!(unsafe { roundup(13) }, 16);
        assert_eq!(unsafe { roundup(16) }, 16);
    }

    /// With it installed, SQLite works (when this test's process opened no
    /// connection before, SQLite runs on mimalloc here).
    #[test]
    fn sqlite_runs_on_it() {
        install();
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (x TEXT); INSERT INTO t VALUES (hex(randomblob(5000)));",
        )
        .unwrap();
        let n: i64 = conn
            .query_row("SELECT length(x) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 10_000);
    }
}
