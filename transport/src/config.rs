//! Settings of one node's transport, handed to every shard.

use std::time::Duration;

use crate::auth::ClusterSecret;
use crate::error::TransportError;
use crate::limits;
use crate::message::Capabilities;

/// What a shard's transport needs to know: who this node is (for Hello) and
/// the bounds it keeps. Start from [`TransportConfig::new`], which takes the
/// bounds from `limits.rs`, then lower what a deployment needs lowered and
/// call [`TransportConfig::validate`].
#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub node_name: String,
    pub capabilities: Capabilities,
    /// Offer an RDMA queue pair in Hello when a device exists (feature `rdma`).
    pub rdma: bool,
    /// The cluster secret both ends of every connection prove in Hello
    /// (`auth.rs`); None: connections are not authenticated.
    pub secret: Option<ClusterSecret>,
    pub frame_bytes_max: u32,
    /// A frame being read fails when none of its bytes has arrived for this
    /// long (a stall, not the whole frame's time; `limits.rs`).
    pub frame_read_ms_max: u64,
    /// A frame being written fails when none of its bytes has left for this
    /// long.
    pub frame_write_ms_max: u64,
    pub requests_in_flight_max: usize,
    pub connections_per_peer_max: usize,
    pub connections_max: usize,
    pub peers_max: usize,
    pub connect_ms_max: u64,
    pub backoff_ms_min: u64,
    pub backoff_ms_max: u64,
}

impl TransportConfig {
    pub fn new(node_name: impl Into<String>) -> Self {
        TransportConfig {
            node_name: node_name.into(),
            capabilities: Capabilities::NONE,
            rdma: true,
            secret: None,
            frame_bytes_max: limits::FRAME_BYTES_MAX,
            frame_read_ms_max: limits::FRAME_READ_MS_MAX,
            frame_write_ms_max: limits::FRAME_WRITE_MS_MAX,
            requests_in_flight_max: limits::REQUESTS_IN_FLIGHT_MAX,
            connections_per_peer_max: limits::CONNECTIONS_PER_PEER_MAX,
            connections_max: limits::CONNECTIONS_MAX,
            peers_max: limits::PEERS_MAX,
            connect_ms_max: limits::CONNECT_MS_MAX,
            backoff_ms_min: limits::BACKOFF_MS_MIN,
            backoff_ms_max: limits::BACKOFF_MS_MAX,
        }
    }

    /// Checks every field; a config that passes cannot make the transport
    /// allocate past `limits.rs` or wait forever.
    pub fn validate(&self) -> Result<(), TransportError> {
        let TransportConfig {
            node_name,
            capabilities: _,
            rdma: _,
            // Checked when it was made (`ClusterSecret::new`).
            secret: _,
            frame_bytes_max,
            frame_read_ms_max,
            frame_write_ms_max,
            requests_in_flight_max,
            connections_per_peer_max,
            connections_max,
            peers_max,
            connect_ms_max,
            backoff_ms_min,
            backoff_ms_max,
        } = self;
        let fail = |reason: String| Err(TransportError::Config { reason });
        if node_name.is_empty() || node_name.len() > limits::NODE_NAME_BYTES_MAX {
            return fail(format!(
                "node_name must be 1..={} bytes, is {}",
                limits::NODE_NAME_BYTES_MAX,
                node_name.len()
            ));
        }
        if *frame_bytes_max < 64 || *frame_bytes_max > limits::FRAME_BYTES_MAX {
            return fail(format!(
                "frame_bytes_max must be 64..={}, is {frame_bytes_max}",
                limits::FRAME_BYTES_MAX
            ));
        }
        let positive = [
            ("frame_read_ms_max", *frame_read_ms_max),
            ("frame_write_ms_max", *frame_write_ms_max),
            ("requests_in_flight_max", *requests_in_flight_max as u64),
            ("connections_per_peer_max", *connections_per_peer_max as u64),
            ("connections_max", *connections_max as u64),
            ("peers_max", *peers_max as u64),
            ("connect_ms_max", *connect_ms_max),
            ("backoff_ms_min", *backoff_ms_min),
        ];
        for (name, value) in positive {
            if value == 0 {
                return fail(format!("{name} must be above 0"));
            }
        }
        let caps = [
            (
                "requests_in_flight_max",
                *requests_in_flight_max,
                limits::REQUESTS_IN_FLIGHT_MAX,
            ),
            (
                "connections_per_peer_max",
                *connections_per_peer_max,
                limits::CONNECTIONS_PER_PEER_MAX,
            ),
            ("connections_max", *connections_max, limits::CONNECTIONS_MAX),
            ("peers_max", *peers_max, limits::PEERS_MAX),
        ];
        for (name, value, max) in caps {
            if value > max {
                return fail(format!("{name} must be at most {max}, is {value}"));
            }
        }
        if backoff_ms_min > backoff_ms_max {
            return fail(format!(
                "backoff_ms_min ({backoff_ms_min}) must not exceed backoff_ms_max ({backoff_ms_max})"
            ));
        }
        Ok(())
    }

    pub(crate) fn frame_read_timeout(&self) -> Duration {
        Duration::from_millis(self.frame_read_ms_max)
    }

    pub(crate) fn frame_write_timeout(&self) -> Duration {
        Duration::from_millis(self.frame_write_ms_max)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_ms_max)
    }
}
