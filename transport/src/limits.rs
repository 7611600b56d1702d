//! Every bound the transport keeps, in one place, unit last. `TransportConfig`
//! starts from these; a node may lower them, and the checks below say how they
//! relate.

/// Bytes of the fixed frame header (magic, version, kind, flags, correlation
/// id, payload length, reserved).
pub const FRAME_HEADER_BYTES: usize = 24;

/// Largest frame payload (the Cap'n Proto message) a node accepts or sends.
/// Checked against the header before anything is allocated. The largest
/// messages carry memory pages or object bytes: 64 MiB of pages plus their
/// index (4 bytes per 4 KiB page, 64 KiB) and a few hundred bytes of fields
/// fit with room to spare. A receiving connection holds at most one frame
/// being read, so a shard's worst case is `CONNECTIONS_MAX` times this, and a
/// 10GbE link moves a full frame in ~110 ms.
pub const FRAME_BYTES_MAX: u32 = 128 << 20;

/// Payloads at most this big are copied next to their header and written
/// with one send; bigger ones go out as header, then payload, without the copy.
pub const FRAME_COALESCE_BYTES_MAX: usize = 64 << 10;

/// Once a frame's header has arrived, the rest must keep coming: when no
/// byte of it has arrived for this long the connection is closed (a peer
/// that stalls mid-frame). It bounds a pause, not the whole frame: a full
/// frame needs ~110 ms at 10GbE but 16 s at 64 Mbit/s, and both are fine.
pub const FRAME_READ_MS_MAX: u64 = 10_000;

/// When no byte of a frame being written has left for this long, the
/// connection is declared stuck (a peer that stopped reading) and closed.
pub const FRAME_WRITE_MS_MAX: u64 = 10_000;

/// While a frame's read or write waits, it is polled again this often even
/// without a readiness signal (see `frame.rs`, `Progress`): a lost wake-up
/// costs at most this long, and a 64 MiB frame at 1 GB/s (~65 ms) a few
/// timer wake-ups.
pub const FRAME_PROGRESS_TICK_MS: u64 = 20;
const _: () = assert!(FRAME_PROGRESS_TICK_MS * 10 <= FRAME_READ_MS_MAX);
const _: () = assert!(FRAME_PROGRESS_TICK_MS * 10 <= FRAME_WRITE_MS_MAX);

/// Requests waiting for an answer on one connection (client side), and
/// requests being handled at once per connection (server side). Beyond it
/// a client waits for a slot and a server stops reading the connection.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 256;

/// Connections a shard's pool keeps to one peer. A new one is opened only
/// when every existing one has a request in flight, so a 64 MiB transfer
/// does not hold small requests behind it.
pub const CONNECTIONS_PER_PEER_MAX: usize = 4;

/// Connections one shard serves at once; more wait in the kernel's backlog.
pub const CONNECTIONS_MAX: usize = 256;

/// Peers one shard's pool tracks.
pub const PEERS_MAX: usize = 1024;

/// TCP connect, and the Hello exchange after it.
pub const CONNECT_MS_MAX: u64 = 1_000;

/// Reconnect backoff: the first retry waits this long, each failure doubles
/// it, up to `BACKOFF_MS_MAX`.
pub const BACKOFF_MS_MIN: u64 = 10;
pub const BACKOFF_MS_MAX: u64 = 2_000;

/// Registered receive (and send) buffer of one RDMA queue pair: the largest
/// page payload that moves by RDMA WRITE; bigger ones go by TCP. Pinned
/// memory, so kept well below a frame: with `CONNECTIONS_PER_PEER_MAX`
/// connections that is 128 MiB pinned per peer per shard.
pub const RDMA_BUFFER_BYTES: usize = 16 << 20;

/// Waiting for one RDMA completion (a WRITE's acknowledgement, or the
/// immediate that announces a payload already announced over TCP).
pub const RDMA_COMPLETION_MS_MAX: u64 = 5_000;

/// Longest node name accepted in a Hello.
pub const NODE_NAME_BYTES_MAX: usize = 256;

/// Length of the cluster secret: 16 bytes (128 bits, if random) put a guess
/// out of reach; more than a few KiB is a mistake (a wrong file).
pub const CLUSTER_SECRET_BYTES_MIN: usize = 16;
pub const CLUSTER_SECRET_BYTES_MAX: usize = 4096;

const _: () = {
    // The 64 MiB page payload the benchmarks and the offload path rely on,
    // with its page index, fits in one frame.
    assert!(FRAME_BYTES_MAX as usize >= (64 << 20) + (64 << 20) / 4096 * 4 + 4096);
    // Payload lengths are u32 on the wire and multiples of a Cap'n Proto word.
    assert!(FRAME_BYTES_MAX % 8 == 0);
    assert!(FRAME_HEADER_BYTES % 8 == 0);
    assert!(FRAME_COALESCE_BYTES_MAX < FRAME_BYTES_MAX as usize);
    assert!(BACKOFF_MS_MIN > 0 && BACKOFF_MS_MIN <= BACKOFF_MS_MAX);
    // A stuck connection is noticed within a backoff cycle's order of magnitude.
    assert!(FRAME_WRITE_MS_MAX >= CONNECT_MS_MAX);
    assert!(REQUESTS_IN_FLIGHT_MAX > 0 && CONNECTIONS_PER_PEER_MAX > 0);
    // An RDMA payload also fits a frame, so TCP can always carry it instead.
    assert!(RDMA_BUFFER_BYTES <= FRAME_BYTES_MAX as usize && RDMA_BUFFER_BYTES % 4096 == 0);
    assert!(CLUSTER_SECRET_BYTES_MIN >= 16 && CLUSTER_SECRET_BYTES_MIN <= CLUSTER_SECRET_BYTES_MAX);
};
