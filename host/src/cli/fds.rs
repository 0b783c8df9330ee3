//! The process's open-file limit, raised to what `max_connections` needs: each connection
//! and WebSocket is a file descriptor, and Linux's default soft limit (1024) is far below
//! the default cap.

/// Descriptors kept for what is not a connection: the database, the compiled-code cache,
/// the admin listener, PostgreSQL and etcd connections.
const SPARE: u64 = 1024;

/// Raises the soft limit towards the hard one, as far as `max_connections` needs; warns
/// when even the hard limit is too low, naming both fixes.
pub fn raise_for(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let wanted = max_connections as u64 + SPARE;
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    if limit.rlim_cur < wanted {
        tracing::warn!(
            open_files = limit.rlim_cur,
            max_connections,
            "the open-file limit is below max_connections plus {SPARE}: raise it (ulimit -n, \
             or LimitNOFILE= in a systemd unit) or lower --max-connections; past it, new \
             connections wait in the kernel's queue"
        );
    }
}
