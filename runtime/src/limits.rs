//! Node-wide defaults for every bound the node enforces. Each can be
//! lowered (or raised, up to the `_MAX` ceilings) in the config; names carry
//! their unit last.

/// Faasm's cap on a module's memory: 4 GiB less one wasm page
/// (faasm/cpp `FAASM_WASM_MAX_MEMORY`, also every module's `--max-memory`).
pub const FAASM_MEMORY_BYTES_MAX: u64 = (4 << 30) - 65536;
/// Linear memory one call may reach: Faasm's. Measured against the 1 GiB
/// default it replaced: the same node start (1.6 s), address space (the
/// pool reserves 4 GiB plus guards per slot either way) and no-op call
/// latency (p50 ~0.1 ms); what it changes is how much a runaway guest
/// holds before it is stopped (memhog: 4 GiB in 3.0 s, not 1 GiB in
/// 0.8 s), so the node budget admits two such calls at once, not eight.
pub const MEMORY_BYTES_MAX_DEFAULT: u64 = FAASM_MEMORY_BYTES_MAX;
/// Hard ceiling for `memory_bytes_max`: wasm32 addresses 4 GiB.
pub const MEMORY_BYTES_MAX_CEILING: u64 = 4 << 30;
/// Wall-clock deadline of one call (and the ceiling of a call's `timeout_ms`).
pub const CALL_MS_MAX_DEFAULT: u64 = 60_000;
/// Input bytes of one call (after base64 decoding).
pub const INPUT_BYTES_MAX_DEFAULT: usize = 16 << 20;
/// Output bytes one call may set.
pub const OUTPUT_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// Bytes of stdout+stderr captured per call; writes past it fail in the guest.
pub const LOG_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Calls in flight on one shard (HTTP calls; chained calls ride on their parent's slot).
pub const CALLS_IN_FLIGHT_MAX_DEFAULT: usize = 64;
/// Extra pooled instances per shard for chained calls and uploads.
pub const INSTANCES_HEADROOM_PER_SHARD: u32 = 32;
/// Offloaded funclets one shard of a storage node runs at once, and how
/// many more may wait for a slot; past both an Offer is declined at once
/// (the compute node runs the funclet itself).
pub const OFFLOAD_SLOTS_MAX_DEFAULT: usize = 8;
pub const OFFLOAD_QUEUE_MAX_DEFAULT: usize = 16;
/// How long a compute node waits for an offloaded funclet's Done before it
/// gives up and runs the funclet itself (capped by the call's deadline).
pub const OFFLOAD_MS_MAX_DEFAULT: u64 = 30_000;
/// Snapshots of at most this many page bytes ride inside the Offer (one
/// round trip); larger ones follow in Pages once the storage node accepts,
/// so a busy node declines before megabytes cross the link. 1 MiB is
/// ~0.9 ms at 10GbE, about what a second round trip costs on loopback.
pub const OFFER_INLINE_BYTES_MAX: usize = 1 << 20;
/// Page bytes of one Pages message (or of a Done): a snapshot or a
/// funclet's changes larger than this travel in parts of this size, well
/// inside the transport's frame limit.
pub const PAGES_PART_BYTES_MAX: usize = 32 << 20;
const _: () =
    assert!(PAGES_PART_BYTES_MAX + (1 << 20) < ferry_transport::limits::FRAME_BYTES_MAX as usize);
/// An accepted Offer whose Pages do not arrive within this time gives its
/// slot back (the compute node died or gave up); a funclet's changes not
/// fetched within it are dropped.
pub const OFFER_PAGES_WAIT_MS_MAX: u64 = 10_000;
/// How long an Offer may wait for a slot before it is declined; well under
/// a compute node's offload wait, so the Decline reaches a caller that is
/// still listening.
pub const OFFER_QUEUE_WAIT_MS_MAX: u64 = 2_000;

/// Pushing a module to another node (it compiles it before answering).
pub const MODULE_PUSH_MS_MAX: u64 = 60_000;
/// The unit wasm linear memory grows by (not a bound: the one home of
/// the number).
pub const WASM_PAGE_BYTES: usize = 65536;
/// Elements a guest's function table may hold.
pub const TABLE_ELEMENTS_MAX: usize = 100_000;
/// Object bytes one transport frame carries between nodes; larger reads
/// take several requests and larger writes are streamed in chunks of this
/// size. Well under the transport's frame cap (128 MiB), so no frame is
/// ever refused for its size.
pub const PEER_CHUNK_BYTES_MAX: usize = 16 << 20;
/// A transport request to another node that takes longer fails.
pub const PEER_REQUEST_MS_MAX: u64 = 30_000;
/// Streamed writes one transport listener keeps open at once, and how long
/// one waits for its next chunk before it is dropped.
pub const PEER_STREAMS_MAX: usize = 64;
pub const PEER_STREAM_IDLE_MS_MAX: u64 = 30_000;
/// How long a user's object-bytes figure, summed from a listing of all
/// their objects, is trusted before the next put lists them again. Writes
/// through this node update it meanwhile; writes through other nodes show
/// up at the next listing, so they can pass the quota by what they wrote
/// in this window.
pub const QUOTA_USAGE_FRESH_MS: u64 = 10_000;
/// Users' object figures a node keeps before the stale ones are swept out.
pub const QUOTA_USAGE_USERS_SWEEP: usize = 1024;
/// Chained calls one call may start, and how deep chains may nest.
pub const CHAINED_CALLS_MAX: usize = 256;
pub const CHAIN_DEPTH_MAX: u32 = 8;
/// A user or function name, in bytes.
pub const NAME_BYTES_MAX: usize = 128;
/// Functions one node keeps (each holds its compiled code mapped, ~100 KiB
/// to a few MiB).
pub const FUNCTIONS_MAX: usize = 10_000;
/// Non-zero bytes a module's pre-initialised memory (its zygote) may
/// hold: they become its data segments and its stored artifact, so a small
/// upload cannot store hundreds of MiB.
pub const ZYGOTE_IMAGE_BYTES_MAX: usize = 64 << 20;
/// A call's `cmdline` (argv past the module's name): Linux's own cap on
/// one argument string is 128 KiB.
pub const CMDLINE_BYTES_MAX: usize = 64 << 10;
/// Linear memory all calls on a node may hold at once, by default: calls
/// that would grow past it trap with a reason instead of the node
/// swapping or being killed.
pub const NODE_MEMORY_BYTES_MAX_DEFAULT: u64 = 8 << 30;
/// A wasm module as uploaded.
pub const MODULE_BYTES_MAX: usize = 256 << 20;
/// HTTP request bodies other than uploads: JSON invocation messages carry
/// the input, base64 at worst 4/3 of it, plus the envelope.
pub const JSON_BODY_BYTES_MAX: usize = INPUT_BYTES_MAX_DEFAULT / 3 * 4 + (64 << 10);
/// Object PUT bodies over HTTP.
pub const OBJECT_BODY_BYTES_MAX: usize = 1 << 30;
/// Object bodies cross HTTP in parts of this size both ways: a PUT is
/// written on as each part arrives, a GET reads a part when the client has
/// taken the one before. An object in flight holds one part, whatever its size.
pub const HTTP_OBJECT_CHUNK_BYTES: usize = 4 << 20;
/// An object PUT sent without `Content-Length` (chunked) is gathered in
/// memory up to this size; larger ones must say their length (411).
pub const OBJECT_BODY_UNSIZED_BYTES_MAX: usize = HTTP_OBJECT_CHUNK_BYTES;
/// HTTP body bytes (requests being read, object parts being answered) a
/// node holds at once, by default. A request that would pass it is
/// answered 503 before its body is read.
pub const HTTP_BUFFER_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// How long a client may take to send a request's headers (also how long
/// an idle keep-alive connection is kept): slow or stalled clients cannot
/// pin connection slots.
pub const HEADER_READ_MS_MAX_DEFAULT: u64 = 30_000;
/// Longest a request body may go without a byte arriving before the
/// request is answered 408 and its connection freed.
pub const BODY_STALL_MS_MAX: u64 = 10_000;
/// Longest one write of an answer to a client may wait (a client that
/// stopped reading) before the connection is closed.
pub const RESPONSE_WRITE_MS_MAX_DEFAULT: u64 = 30_000;
/// Open HTTP connections per shard; more are closed at accept.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 4096;
/// How long a closing HTTP connection keeps reading (and dropping) what
/// its client still sends, so the client reads the answer before the
/// socket closes (http/mod.rs, `linger`).
pub const LINGER_MS_MAX: u64 = 2_000;
/// How many bytes a closing HTTP connection reads and drops at most.
pub const LINGER_BYTES_MAX: usize = 64 << 20;
/// Finished asynchronous calls kept for polling.
pub const ASYNC_RESULTS_MAX: usize = 100_000;
pub const ASYNC_RESULT_RETENTION_S_DEFAULT: u64 = 600;
/// Output and log bytes of the asynchronous results a node keeps at once;
/// past it the oldest give way (8 results of 32 MiB held 256 MiB before).
pub const ASYNC_RESULT_BYTES_MAX: usize = 128 << 20;
/// Users with an API token (`[auth]`): a request with a token of no
/// user's is told so after one constant-time compare per user.
pub const AUTH_USERS_MAX: usize = 1024;
/// Length of an API token: 16 bytes (128 bits, if random) put a guess out
/// of reach; 512 is far past any token generator's output.
pub const TOKEN_BYTES_MIN: usize = 16;
pub const TOKEN_BYTES_MAX: usize = 512;
/// Epoch tick: how often a running guest yields its shard to other calls.
/// Each step of a neighbour's request (read it, instantiate, answer, each
/// I/O completion) waits out at most one tick behind a CPU-bound guest:
/// measured with a looping guest on a one-shard node, a no-op call took
/// 17 ms and a 1-byte PUT 125 ms at 5 ms, 4 ms and 30 ms at 1 ms (0.5 and
/// 2-6 ms alone). A yield costs a fiber switch, ~1 us: 0.1% of a core.
pub const EPOCH_TICK_MS: u64 = 1;
/// How often a shard busy with runnable tasks (a looping guest yields every
/// epoch tick and is runnable again at once) stops to collect I/O
/// completions: the most a guest delays its neighbours' I/O by.
pub const SHARD_PREEMPT_MS: u64 = 2;
/// glommio's registered I/O memory per shard (it must be locked in RAM).
pub const SHARD_IO_MEMORY_BYTES: usize = 2 << 20;
/// Fiber stack of one running call (wasm stack plus host frames).
pub const ASYNC_STACK_BYTES: usize = 2 << 20;
pub const WASM_STACK_BYTES_MAX: usize = 1 << 20;

/// Faasm state (host/state.rs): a key's bytes (a short name), and one
/// value's bytes (a value is read whole into the host to serve a call).
pub const STATE_KEY_BYTES_MAX: usize = 256;
pub const STATE_VALUE_BYTES_MAX: usize = 64 << 20;
/// Bytes one call may write to files (its working directory, `/tmp` and
/// `faasm://` copies) unless `[limits] file_bytes_max` says otherwise.
pub const FILE_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// Largest `faasm://` shared file fetched into or written back from a
/// node's copy (host/files.rs): each is held whole in memory once.
pub const SHARED_FILE_BYTES_MAX: u64 = 256 << 20;

const _: () = assert!(WASM_STACK_BYTES_MAX < ASYNC_STACK_BYTES);
const _: () = assert!(MEMORY_BYTES_MAX_DEFAULT <= MEMORY_BYTES_MAX_CEILING);
const _: () = assert!(TOKEN_BYTES_MIN >= 16 && TOKEN_BYTES_MIN <= TOKEN_BYTES_MAX);
