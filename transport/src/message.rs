//! ferry's node-to-node messages as plain Rust types. The Cap'n Proto
//! readers and builders never leave `codec.rs`; everything else in the
//! workspace sees these.
//!
//! Large payloads (memory pages, object and module bytes) are [`Bytes`]: on
//! receipt they are slices of the frame's receive buffer, not copies, and
//! they keep that buffer alive for as long as they are held.

use bytes::Bytes;

use crate::auth::{Nonce, Proof};
use crate::error::TransportError;
use ferry_schemas::ferry_capnp;

/// Version of the message schema; a node refuses a peer with another one.
pub const PROTOCOL_VERSION: u32 = ferry_capnp::PROTOCOL_VERSION;

/// Bytes of one page in a [`PageSet`] (the offload unit, not wasm's 64 KiB).
pub const PAGE_BYTES: usize = ferry_capnp::PAGE_BYTES as usize;

/// A message and, for the frame header, its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Offer(Offer),
    Accept {
        call_id: u64,
        slot: u32,
    },
    Decline {
        call_id: u64,
        reason: String,
    },
    Pages(Pages),
    Done(Done),
    ObjectRead {
        user: String,
        key: Vec<u8>,
        offset: u64,
        len_max: u64,
        store: Store,
    },
    ObjectData {
        found: bool,
        /// The whole object's size.
        object_bytes: u64,
        /// Where `data` starts in the object.
        offset: u64,
        data: Bytes,
    },
    /// Creates or replaces the whole object: `data` is all of it when
    /// `offset` is 0 and `total_bytes == data.len()`; otherwise one chunk,
    /// in order, of the stream `write_id` (see the schema).
    ObjectWrite {
        user: String,
        key: Vec<u8>,
        data: Bytes,
        offset: u64,
        total_bytes: u64,
        write_id: u64,
        store: Store,
    },
    ObjectWritten {
        object_bytes: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// A function's uploaded module for another node to hold: upload
    /// propagation, or a node that lacks the module an Offer names.
    Module(ModuleUpload),
    /// Answer to [`Message::Module`]: the receiver holds the module.
    ModuleStored {
        hash: ModuleHash,
    },
    /// Asks for the keys and sizes of `user`'s objects.
    ObjectList {
        user: String,
        store: Store,
    },
    ObjectListing {
        entries: Vec<ObjectEntry>,
    },
    /// Removes the whole object.
    ObjectDelete {
        user: String,
        key: Vec<u8>,
        store: Store,
    },
    ObjectDeleted {
        /// Whether there was an object to remove.
        found: bool,
    },
    /// Changes a state value in place where it is stored, under that
    /// node's lock for it; answered with [`Message::ObjectWritten`].
    StateUpdate(StateUpdate),
    /// Asks for the next part of a Done's changed pages; answered with
    /// [`Message::Pages`].
    FetchPages {
        call_id: u64,
    },
}

/// A change to one state value, applied by the node that stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateUpdate {
    pub user: String,
    pub key: Vec<u8>,
    pub change: StateChange,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// Writes `data`, cut into `ranges` (offset, length) in order, over
    /// the value, first growing it with zeros to `value_bytes` if shorter.
    /// The decoder checks that the lengths add up to `data` and that every
    /// range lies inside `value_bytes`.
    Ranges {
        value_bytes: u64,
        ranges: Vec<(u64, u64)>,
        data: Bytes,
    },
    /// Puts `data` at the value's end (a missing value is empty).
    Append(Bytes),
}

/// Which of a storage node's stores an object request addresses; a peer
/// that leaves the field out means objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Store {
    /// The objects of `/o/` and the NDP imports.
    #[default]
    Objects,
    /// Faasm's state values (`/s/`, the `__faasm_*_state` imports).
    State,
}

/// The frame header's message kind. The numbers are wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    Hello = 1,
    Offer = 2,
    Accept = 3,
    Decline = 4,
    Pages = 5,
    Done = 6,
    ObjectRead = 7,
    ObjectData = 8,
    ObjectWrite = 9,
    ObjectWritten = 10,
    Error = 11,
    Module = 12,
    ModuleStored = 13,
    ObjectList = 14,
    ObjectListing = 15,
    ObjectDelete = 16,
    ObjectDeleted = 17,
    StateUpdate = 18,
    FetchPages = 19,
}

impl MessageKind {
    /// Every kind in wire order; the check below keeps the numbers dense.
    pub const ALL: [MessageKind; 19] = [
        MessageKind::Hello,
        MessageKind::Offer,
        MessageKind::Accept,
        MessageKind::Decline,
        MessageKind::Pages,
        MessageKind::Done,
        MessageKind::ObjectRead,
        MessageKind::ObjectData,
        MessageKind::ObjectWrite,
        MessageKind::ObjectWritten,
        MessageKind::Error,
        MessageKind::Module,
        MessageKind::ModuleStored,
        MessageKind::ObjectList,
        MessageKind::ObjectListing,
        MessageKind::ObjectDelete,
        MessageKind::ObjectDeleted,
        MessageKind::StateUpdate,
        MessageKind::FetchPages,
    ];

    pub fn from_wire(value: u8) -> Option<MessageKind> {
        MessageKind::ALL
            .into_iter()
            .find(|kind| *kind as u8 == value)
    }

    /// The schema's struct name, for errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Hello => "Hello",
            MessageKind::Offer => "Offer",
            MessageKind::Accept => "Accept",
            MessageKind::Decline => "Decline",
            MessageKind::Pages => "Pages",
            MessageKind::Done => "Done",
            MessageKind::ObjectRead => "ObjectRead",
            MessageKind::ObjectData => "ObjectData",
            MessageKind::ObjectWrite => "ObjectWrite",
            MessageKind::ObjectWritten => "ObjectWritten",
            MessageKind::Error => "Error",
            MessageKind::Module => "ModuleUpload",
            MessageKind::ModuleStored => "ModuleStored",
            MessageKind::ObjectList => "ObjectList",
            MessageKind::ObjectListing => "ObjectListing",
            MessageKind::ObjectDelete => "ObjectDelete",
            MessageKind::ObjectDeleted => "ObjectDeleted",
            MessageKind::StateUpdate => "StateUpdate",
            MessageKind::FetchPages => "FetchPages",
        }
    }
}

// `ALL` lists kind `i + 1` at position `i`: no wire number is skipped or
// listed twice, so `from_wire` knows every kind and `ALL.len() + 1` is the
// first unknown one.
const _: () = {
    let mut i = 0;
    while i < MessageKind::ALL.len() {
        assert!(MessageKind::ALL[i] as usize == i + 1);
        i += 1;
    }
};

impl Message {
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Hello(_) => MessageKind::Hello,
            Message::Offer(_) => MessageKind::Offer,
            Message::Accept { .. } => MessageKind::Accept,
            Message::Decline { .. } => MessageKind::Decline,
            Message::Pages(_) => MessageKind::Pages,
            Message::Done(_) => MessageKind::Done,
            Message::ObjectRead { .. } => MessageKind::ObjectRead,
            Message::ObjectData { .. } => MessageKind::ObjectData,
            Message::ObjectWrite { .. } => MessageKind::ObjectWrite,
            Message::ObjectWritten { .. } => MessageKind::ObjectWritten,
            Message::Error { .. } => MessageKind::Error,
            Message::Module(_) => MessageKind::Module,
            Message::ModuleStored { .. } => MessageKind::ModuleStored,
            Message::ObjectList { .. } => MessageKind::ObjectList,
            Message::ObjectListing { .. } => MessageKind::ObjectListing,
            Message::ObjectDelete { .. } => MessageKind::ObjectDelete,
            Message::ObjectDeleted { .. } => MessageKind::ObjectDeleted,
            Message::StateUpdate(_) => MessageKind::StateUpdate,
            Message::FetchPages { .. } => MessageKind::FetchPages,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Message {
        Message::Error {
            code,
            message: message.into(),
        }
    }
}

/// First message on a connection, both ways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub node_name: String,
    pub capabilities: Capabilities,
    /// Our queue pair, when this node offers RDMA on this connection.
    pub rdma: Option<RdmaEndpoint>,
    /// This side's nonce for proving the cluster secret (`auth.rs`).
    pub nonce: Option<Nonce>,
    /// This side's proof of the cluster secret over both nonces.
    pub proof: Option<Proof>,
}

/// Bit set of what a node offers its peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(pub u64);

impl Capabilities {
    pub const NONE: Capabilities = Capabilities(0);
    pub const RDMA: Capabilities = Capabilities(ferry_capnp::CAPABILITY_RDMA);
    pub const OFFLOAD: Capabilities = Capabilities(ferry_capnp::CAPABILITY_OFFLOAD);
    pub const OBJECTS: Capabilities = Capabilities(ferry_capnp::CAPABILITY_OBJECTS);

    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    pub fn without(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 & !other.0)
    }
}

/// What a peer needs to connect a reliable-connection queue pair to ours and
/// to RDMA WRITE into our receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RdmaEndpoint {
    pub qp_number: u32,
    pub packet_sequence: u32,
    pub lid: u16,
    pub gid: [u8; 16],
    pub mtu: u8,
    pub recv_address: u64,
    pub recv_key: u32,
    pub recv_bytes: u64,
}

/// Identifies an uploaded module (and so its zygote image): SHA-256 of the
/// module's bytes.
pub type ModuleHash = [u8; 32];

/// Compute node to storage node: may I run this funclet next to `key`?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub call_id: u64,
    pub user: String,
    pub function: String,
    pub module_hash: ModuleHash,
    pub key: Vec<u8>,
    /// Element of the module's function table.
    pub funclet_index: u32,
    pub args: Vec<i32>,
    /// Linear memory size in 64 KiB wasm pages.
    pub memory_pages: u32,
    pub globals: Vec<Global>,
    /// Small snapshots ride in the Offer: one round trip.
    pub inline_pages: Option<PageSet>,
    /// How long the offering node waits for Done from sending the Offer,
    /// in ms: the storage node stops the funclet when that has passed,
    /// since nobody waits for it any more. 0: not said (an older peer); the
    /// storage node's own call limit applies.
    pub wait_ms: u32,
}

/// A function's module, for a node that should hold it. The transport
/// carries `hash` as given; checking it against `wasm` is the receiver's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleUpload {
    pub user: String,
    pub function: String,
    pub hash: ModuleHash,
    /// On receipt, a slice of the frame's receive buffer.
    pub wasm: Bytes,
}

/// One object in a [`Message::ObjectListing`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: Vec<u8>,
    /// The object's whole size.
    pub size_bytes: u64,
}

/// A mutable wasm global: its index in the module and its raw bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Global {
    pub index: u32,
    pub bits: u64,
}

/// The snapshot's dirty pages, when they did not ride in the Offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pages {
    pub call_id: u64,
    pub pages: PageSet,
    /// More Pages of this call follow: a snapshot (or a funclet's changes)
    /// larger than one frame travels in parts.
    pub more: bool,
}

/// The funclet's result and what it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub call_id: u64,
    pub return_value: i32,
    pub globals: Vec<Global>,
    /// Memory size after the call, in 64 KiB wasm pages.
    pub memory_pages: u32,
    pub dirty_pages: PageSet,
    /// Parts of the changed pages still to fetch with
    /// [`Message::FetchPages`], after `dirty_pages`.
    pub pages_to_follow: u32,
}

/// Error codes of [`Message::Error`]. Wire format: the schema's `ErrorCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Internal,
    /// The request broke the protocol or a limit.
    BadRequest,
    /// Unknown module, function or slot.
    NotFound,
    /// The funclet trapped.
    Trap,
    VersionMismatch,
    /// The node is shutting down or not ready.
    Unavailable,
    /// The peer did not prove the cluster secret in Hello.
    Unauthenticated,
}

/// 4 KiB pages of linear memory: page `indices()[i]` is
/// `data()[i * PAGE_BYTES..(i + 1) * PAGE_BYTES]`. One contiguous buffer, so a
/// receiver gets every page without a copy.
///
/// Invariants, checked by [`PageSet::new`] on both sides of the wire: the data
/// is exactly `indices.len() * PAGE_BYTES` bytes and the indices strictly
/// ascend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageSet {
    indices: Vec<u32>,
    data: Bytes,
}

impl PageSet {
    pub fn new(indices: Vec<u32>, data: Bytes) -> Result<PageSet, TransportError> {
        let expected = (indices.len() as u64).saturating_mul(PAGE_BYTES as u64);
        if data.len() as u64 != expected {
            return Err(TransportError::bad_message(
                "PageSet",
                format!(
                    "{} pages need {expected} bytes of data, got {}",
                    indices.len(),
                    data.len()
                ),
            ));
        }
        if let Some(position) = indices.windows(2).position(|pair| pair[0] >= pair[1]) {
            return Err(TransportError::bad_message(
                "PageSet",
                format!(
                    "page indices must ascend; {} follows {} at position {}",
                    indices[position + 1],
                    indices[position],
                    position + 1
                ),
            ));
        }
        Ok(PageSet { indices, data })
    }

    pub fn empty() -> PageSet {
        PageSet::default()
    }

    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// Every page's bytes, back to back, in `indices()` order.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// (page index, its 4 KiB) in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        self.indices
            .iter()
            .copied()
            .zip(self.data.chunks_exact(PAGE_BYTES))
    }

    pub fn into_parts(self) -> (Vec<u32>, Bytes) {
        (self.indices, self.data)
    }
}
