//! Process-wide memory settings of the engine.

/// Turns transparent huge pages off for this process (Linux), unless `MIMALLOC_ALLOW_THP` is
/// set, in which case mimalloc has applied that choice itself.
///
/// Why: mimalloc asks the kernel for huge pages on its arenas. A heap that grows, or touches
/// again memory it returned to the system, then takes a page fault that zeroes a whole 2 MiB
/// page, on the thread that happened to allocate. During a drop rush with HTTP buyers that was
/// a sixth of the engine's CPU and put 50–100 ms stalls into the claims' latency (p99 69–116 ms
/// with huge pages, 8–16 ms without; docs/BENCHMARKS.md). Returns whether it turned them off.
pub fn disable_transparent_huge_pages() -> std::io::Result<bool> {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    Ok(false)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_are_off_afterwards() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            return;
        }
        assert!(disable_transparent_huge_pages().unwrap());
        // SAFETY: as above; PR_GET_THP_DISABLE returns the flag.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1);
    }
}
