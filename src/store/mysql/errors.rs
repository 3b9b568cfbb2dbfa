//! What a driver error means to callers: conflict, timeout, unavailable or other.

use crate::store::{StoreError, StoreResult};
use mysql_async::Conn;

/// Maps a driver error to what callers act on.
pub(super) fn classify(e: mysql_async::Error, what: &'static str) -> StoreError {
    use mysql_async::Error as E;
    match e {
        E::Server(s) => match s.code {
            1062 => StoreError::Conflict(what),
            // Lock wait timeout, statement time limits.
            1205 | 1969 | 3024 => StoreError::Timeout(what),
            // Too many connections, access denied, unknown database, shutdown, killed,
            // server gone away, lost connection.
            1040 | 1044 | 1045 | 1049 | 1053 | 1077 | 1927 | 2006 | 2013 => {
                StoreError::Unavailable(format!("{what}: {s}"))
            }
            _ => StoreError::Other(format!("{what}: {s}")),
        },
        // The driver wraps the system's error in its own, each saying "Input/output
        // error": name the cause once.
        E::Io(_) => StoreError::Unavailable(format!("{what}: {}", root_cause(&e))),
        E::Driver(_) => StoreError::Unavailable(format!("{what}: {e}")),
        E::Other(_) | E::Url(_) => StoreError::Other(format!("{what}: {e}")),
    }
}

/// The innermost error of a chain, the one that says what actually happened.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

pub(super) fn not_found_unless_changed(c: &Conn, what: &'static str) -> StoreResult<()> {
    if c.affected_rows() == 0 {
        Err(StoreError::NotFound(what))
    } else {
        Ok(())
    }
}
