//! The open-file limit. Every HTTP connection, WebRTC socket, recording and database file is
//! a descriptor; distributions start services with a soft limit of 1024 (or less) under a
//! much higher hard limit. The server raises its soft limit to the hard one at start and sizes
//! its HTTP connection cap from the result, so a flood of connections meets the cap (a clean
//! `503`), not `EMFILE` everywhere.

/// The open-file limit after [`raise_open_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit in force now.
    pub soft: u64,
    pub hard: u64,
    /// The soft limit before, when it was raised.
    pub raised_from: Option<u64>,
}

/// Highest soft limit asked for when the hard limit is unlimited (Linux refuses "unlimited"
/// for open files; `fs.nr_open` defaults to this).
const UNLIMITED_CAP: u64 = 1 << 20;

/// Raises the soft open-file limit to the hard limit.
#[cfg(unix)]
pub fn raise_open_files() -> std::io::Result<OpenFiles> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // `rlim_t` is u64 on Linux but not on every Unix: the conversions stay.
    #[allow(clippy::useless_conversion)]
    let (soft, hard) = (u64::from(lim.rlim_cur), u64::from(lim.rlim_max));
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        UNLIMITED_CAP.max(soft)
    } else {
        hard
    };
    if target <= soft {
        return Ok(OpenFiles {
            soft,
            hard,
            raised_from: None,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: target as libc::rlim_t,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own and pass by pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OpenFiles {
        soft: target,
        hard,
        raised_from: Some(soft),
    })
}

#[cfg(not(unix))]
pub fn raise_open_files() -> std::io::Result<OpenFiles> {
    Err(std::io::Error::other("not supported on this platform"))
}

/// The HTTP connections to serve at most: the configured cap, but no more than half the
/// open-file limit (the other half is for media sockets, recordings and the database).
pub fn connection_cap(configured: usize, open_files: Option<OpenFiles>) -> usize {
    match open_files {
        Some(f) => {
            let half = usize::try_from(f.soft / 2).unwrap_or(usize::MAX);
            configured.min(half).max(1)
        }
        None => configured.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_one() {
        let f = raise_open_files().expect("rlimit");
        assert!(f.soft >= 1);
        assert!(f.soft == f.hard || f.soft == UNLIMITED_CAP, "{f:?}");
        // Raising again changes nothing.
        assert_eq!(raise_open_files().expect("rlimit").raised_from, None);
    }

    #[test]
    fn the_connection_cap_leaves_half_the_descriptors() {
        let files = |soft| {
            Some(OpenFiles {
                soft,
                hard: soft,
                raised_from: None,
            })
        };
        assert_eq!(connection_cap(1024, files(256)), 128);
        assert_eq!(connection_cap(1024, files(1 << 20)), 1024);
        assert_eq!(connection_cap(1024, None), 1024);
        assert_eq!(connection_cap(1024, files(1)), 1);
    }
}
