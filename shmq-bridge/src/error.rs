//! The bridge's one error type.

use std::fmt;

use crate::wire::WireError;

/// Why a bridge stopped, or could not start. Each says what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum BridgeError {
    /// A bad argument (a name, a size, a configuration).
    Usage(String),
    /// zenoh refused a configuration, a session, a declaration or a put.
    Zenoh(zenoh::Error),
    /// A local ring could not be opened, created or attached to (the
    /// library's own error).
    Local {
        /// The ring.
        name: String,
        /// What the library said.
        error: shmqueue::Error,
    },
    /// A call on a local typed or broadcast ring failed (through the C API:
    /// its status code and message).
    Ring {
        /// The ring.
        name: String,
        /// The operation.
        what: &'static str,
        /// The `shmq_status` value.
        status: i32,
        /// The bindings' message.
        message: String,
    },
    /// A local byte ring's send or receive failed (its peer gone, a
    /// message too large, corruption).
    LocalIo {
        /// The ring.
        name: String,
        /// What the library said.
        error: String,
    },
    /// The receiving ring cannot take the stream: nothing was written.
    Mismatch {
        /// The receiving ring.
        name: String,
        /// What differs: kind, element size, alignment or schema.
        what: &'static str,
        /// The local ring's value.
        local: String,
        /// The stream's value.
        remote: String,
    },
    /// The receiving bridge refused this stream (its own `Mismatch`).
    Refused(String),
    /// A message on the stream's keys that is not a bridge message of this
    /// format.
    Wire(WireError),
    /// The in-bridge's state file could not be read or written.
    State {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Usage(m) => f.write_str(m),
            BridgeError::Zenoh(e) => write!(
                f,
                "zenoh: {e} (check the --listen/--connect endpoints and that the peer is reachable)"
            ),
            BridgeError::Local { name, error } => write!(f, "{name}: {error}"),
            BridgeError::Ring {
                name,
                what,
                message,
                ..
            } => write!(f, "{name}: {what}: {message}"),
            BridgeError::LocalIo { name, error } => write!(f, "{name}: {error}"),
            BridgeError::Mismatch {
                name,
                what,
                local,
                remote,
            } => write!(
                f,
                "{name} does not match the stream: {what} {local} here, {remote} on the wire; \
                 nothing was written (bridge into a ring of the source's geometry, or let \
                 `--create` make one)"
            ),
            BridgeError::Refused(r) => write!(f, "the receiving bridge refused the stream: {r}"),
            BridgeError::Wire(e) => write!(f, "{e}"),
            BridgeError::State { path, error } => write!(
                f,
                "state file {}: {error} (it records what reached the local ring; \
                 give a writable --state path)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BridgeError::Local { error, .. } => Some(error),
            BridgeError::Wire(e) => Some(e),
            BridgeError::State { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<zenoh::Error> for BridgeError {
    fn from(e: zenoh::Error) -> Self {
        BridgeError::Zenoh(e)
    }
}

impl From<WireError> for BridgeError {
    fn from(e: WireError) -> Self {
        BridgeError::Wire(e)
    }
}
