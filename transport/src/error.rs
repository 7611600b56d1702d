//! The transport's one error type.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything that can go wrong between two nodes. Variants carry the numbers
/// a caller or a log reader needs. `Clone` so that one broken connection can
/// fail every request waiting on it with the same cause.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TransportError {
    /// A frame header announced a payload over the limit; nothing was
    /// allocated for it and the connection was closed.
    #[error("frame of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    FrameTooLarge { len_bytes: u64, max_bytes: u64 },

    /// The bytes on the stream are not a ferry frame (bad magic, version,
    /// kind, flags or length); the connection was closed.
    #[error("bad frame: {reason}")]
    BadFrame { reason: String },

    /// A frame was well formed but its Cap'n Proto payload, or a value in
    /// it, is not a valid message of its kind.
    #[error("bad {kind} message: {reason}")]
    BadMessage { kind: &'static str, reason: String },

    /// No answer within the request's time budget. The connection stays up.
    #[error("no answer within {ms} ms")]
    Timeout { ms: u64 },

    /// The peer closed the connection (or it was closed after an error)
    /// before the answer arrived.
    #[error("peer closed the connection")]
    PeerClosed,

    /// Connecting to a peer failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: Arc<io::Error>,
    },

    /// The pool is waiting out a peer's reconnect backoff and the request's
    /// time budget ends first.
    #[error("{addr} is in reconnect backoff for another {retry_in_ms} ms")]
    Backoff { addr: SocketAddr, retry_in_ms: u64 },

    /// Reading or writing the socket failed.
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: Arc<io::Error>,
    },

    /// The peer did not prove the cluster secret (it has none, or another
    /// one), or refused our proof; the connection was closed.
    #[error("peer not authenticated: {reason}")]
    Unauthenticated { reason: String },

    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {peer}, this node {ours}")]
    VersionMismatch { ours: u32, peer: u32 },

    /// The peer answered with a message that does not answer the request.
    #[error("expected {expected} in answer, got {got}")]
    UnexpectedMessage {
        expected: &'static str,
        got: &'static str,
    },

    /// A bounded resource (requests in flight, connections, peers) is full.
    #[error("{what} limit of {max} reached")]
    LimitReached { what: &'static str, max: u64 },

    /// A `TransportConfig` value is out of range.
    #[error("invalid transport config: {reason}")]
    Config { reason: String },

    /// A verbs call failed (feature `rdma`).
    #[error("RDMA {op} failed: errno {errno}")]
    Rdma { op: &'static str, errno: i32 },
}

impl TransportError {
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        TransportError::Io {
            op,
            source: Arc::new(source),
        }
    }

    pub(crate) fn bad_frame(reason: impl Into<String>) -> Self {
        TransportError::BadFrame {
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_message(kind: &'static str, reason: impl ToString) -> Self {
        TransportError::BadMessage {
            kind,
            reason: reason.to_string(),
        }
    }

    /// Whether the connection that produced this error is unusable
    /// afterwards. A timeout or an answer of the wrong kind leaves it up.
    pub fn closes_connection(&self) -> bool {
        !matches!(
            self,
            TransportError::Timeout { .. }
                | TransportError::UnexpectedMessage { .. }
                | TransportError::Backoff { .. }
                | TransportError::LimitReached { .. }
        )
    }
}
