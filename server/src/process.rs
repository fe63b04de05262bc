//! The process's own resources: CPU time and resident memory for `/metrics` (the standard
//! `process_*` metrics that Prometheus clients export), and the open-file limit, raised at
//! start-up so `max_connections` sockets fit.
//!
//! Uses `nix` for `getrusage` and `getrlimit`/`setrlimit` (safe wrappers; this workspace forbids
//! `unsafe`), and `/proc/self` for what only Linux reports (resident memory, open files).

use crate::error::ServerError;
use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use nix::sys::time::TimeValLike;

/// Open files the process needs besides one per connection: listeners, the admin endpoint,
/// connections refused at accept, log files, the map.
pub const FILE_RESERVE: u64 = 64;

/// CPU time (user and system) the process has used, in seconds.
#[must_use]
pub fn cpu_seconds() -> Option<f64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let us = usage.user_time().num_microseconds() + usage.system_time().num_microseconds();
    Some(us as f64 / 1e6)
}

/// Resident memory of the process, in bytes (Linux only).
#[must_use]
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Files the process has open (Linux only).
#[must_use]
pub fn open_files() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The soft limit on open files.
#[must_use]
pub fn max_files() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// What [`raise_file_limit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub now: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft open-file limit toward the hard limit (only as far as `max_connections`
/// needs, never lowering it), and fails if the cap still cannot fit.
pub fn raise_file_limit(max_connections: usize) -> Result<FileLimit, ServerError> {
    let needed = max_connections as u64 + FILE_RESERVE;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        // No limit can be read (not a Unix the crate knows): nothing to raise or check.
        return Ok(FileLimit {
            before: u64::MAX,
            now: u64::MAX,
            hard: u64::MAX,
        });
    };
    let mut now = soft;
    if soft < needed {
        let target = needed.min(hard);
        if setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
            now = target;
        }
    }
    if now < needed {
        return Err(ServerError::FileLimit {
            max_connections,
            needed,
            limit: now,
        });
    }
    Ok(FileLimit {
        before: soft,
        now,
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_memory_and_files() {
        // Burn a little CPU so the figure is not zero.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds().expect("getrusage works") > 0.0);
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().expect("VmRSS") > 1024 * 1024);
            assert!(open_files().expect("fds") >= 3);
        }
    }

    #[test]
    fn a_cap_over_the_hard_limit_is_refused_with_a_clear_message() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("readable");
        if hard >= u64::MAX / 2 {
            return; // Unlimited: nothing can be over it.
        }
        let too_many = usize::try_from(hard).expect("fits");
        let e = raise_file_limit(too_many).expect_err("cannot fit");
        let text = e.to_string();
        assert!(
            text.contains("max_connections") && text.contains("ulimit"),
            "{text}"
        );
        let ok = raise_file_limit(16).expect("a small cap fits");
        assert!(ok.now >= 16 + FILE_RESERVE);
    }
}
