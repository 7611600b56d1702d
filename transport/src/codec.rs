//! Message <-> Cap'n Proto. The only module that touches the generated
//! readers and builders.
//!
//! Encoding builds the message in one segment sized from an upper-bound
//! estimate, so the wire bytes are the segment table (8 bytes) and that one
//! segment, written without another copy. Decoding reads the message in place
//! from the frame's receive buffer; `Data` fields come out as slices of that
//! buffer.

use bytes::Bytes;
use capnp::message::{Builder, HeapAllocator, ReaderOptions};
use capnp::serialize;

use crate::error::TransportError;
use crate::limits;
use crate::message::{
    Capabilities, Done, ErrorCode, Global, Hello, Message, MessageKind, ModuleHash, ModuleUpload,
    ObjectEntry, Offer, PageSet, Pages, RdmaEndpoint, StateChange, StateUpdate, Store, PAGE_BYTES,
};
use ferry_schemas::ferry_capnp as wire;

const WORD_BYTES: usize = 8;

/// A message built and ready to frame.
pub(crate) struct Encoded {
    builder: Builder<HeapAllocator>,
    /// Large data fields left out of the segments: their place in the
    /// segment is allocated (zero, untouched) and the bytes are written from
    /// the message's own `Bytes` in their place, so a 64 MiB object is not
    /// copied into the message (~10 ms of memcpy and 16k page faults).
    holes: Vec<Hole>,
}

/// A data field's bytes, to be sent in place of `len` bytes at `offset` of
/// segment `segment`.
pub(crate) struct Hole {
    pub(crate) segment: usize,
    pub(crate) offset: usize,
    pub(crate) data: Bytes,
}

/// Data fields at least this long are sent from the message's memory
/// rather than copied into the Cap'n Proto segment. Frames this big are
/// never coalesced (`FRAME_COALESCE_BYTES_MAX`), so they go out piece by
/// piece anyway.
const HOLE_BYTES_MIN: usize = 64 << 10;
const _: () = assert!(HOLE_BYTES_MIN >= crate::limits::FRAME_COALESCE_BYTES_MAX);

/// Where large data fields go while a message is built: the address of
/// each field's place in the segment, and its bytes.
#[derive(Default)]
struct Holes(Vec<(usize, Bytes)>);

impl Holes {
    /// Whether `data` is sent from its own memory (large) or copied into
    /// the segment (small).
    fn takes(data: &[u8]) -> bool {
        data.len() >= HOLE_BYTES_MIN
    }

    /// Records the place `init_data` allocated for `data`.
    fn record(&mut self, place: &[u8], data: &Bytes) {
        debug_assert_eq!(place.len(), data.len());
        self.0.push((place.as_ptr() as usize, data.clone()));
    }
}

impl Encoded {
    /// The wire segments (one, unless the size estimate was wrong). Holes
    /// in them are zero: send [`Encoded::holes`] in their place.
    pub(crate) fn segments(&self) -> capnp::OutputSegments<'_> {
        self.builder.get_segments_for_output()
    }

    /// Large data fields to send in place of their zeroed bytes, in order
    /// of (segment, offset).
    pub(crate) fn holes(&self) -> &[Hole] {
        &self.holes
    }

    /// Turns recorded field addresses into places in the segments.
    fn place_holes(&mut self, addresses: Holes) -> Result<(), String> {
        let segments = self.builder.get_segments_for_output();
        let mut holes = Vec::with_capacity(addresses.0.len());
        for (address, data) in addresses.0 {
            let found = segments.iter().enumerate().find_map(|(i, segment)| {
                let start = segment.as_ptr() as usize;
                (address >= start && address + data.len() <= start + segment.len())
                    .then(|| (i, address - start))
            });
            let Some((segment, offset)) = found else {
                return Err("a data field lies outside every segment".into());
            };
            holes.push(Hole {
                segment,
                offset,
                data,
            });
        }
        holes.sort_by_key(|hole| (hole.segment, hole.offset));
        self.holes = holes;
        Ok(())
    }

    /// The whole encoding with the holes filled: for tests and for frames
    /// built into one buffer.
    pub(crate) fn segments_filled(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self
            .segments()
            .iter()
            .map(|segment| segment.to_vec())
            .collect();
        for hole in &self.holes {
            out[hole.segment][hole.offset..hole.offset + hole.data.len()]
                .copy_from_slice(&hole.data);
        }
        out
    }

    /// Bytes of the flat encoding: segment table plus segments.
    pub(crate) fn payload_bytes(&self) -> usize {
        serialize::compute_serialized_size_in_words(&self.builder) * WORD_BYTES
    }
}

/// Builds `message`. Refuses, before building, a message whose payload bytes
/// alone exceed `frame_bytes_max`, and after building one whose encoding does.
#[cfg(test)]
pub(crate) fn encode(message: &Message, frame_bytes_max: u32) -> Result<Encoded, TransportError> {
    encode_with(message, frame_bytes_max, PageBytes::Inline)
}

/// Where a message's page bytes travel.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageBytes {
    /// In the frame, as the PageSet's `data`.
    Inline,
    /// Elsewhere (an RDMA WRITE); the frame carries the page indices only.
    #[cfg_attr(not(feature = "rdma"), allow(dead_code))]
    Elsewhere,
}

pub(crate) fn encode_with(
    message: &Message,
    frame_bytes_max: u32,
    page_bytes: PageBytes,
) -> Result<Encoded, TransportError> {
    let payload_bytes = payload_bytes_lower_bound(message);
    if payload_bytes > u64::from(frame_bytes_max) {
        return Err(TransportError::FrameTooLarge {
            len_bytes: payload_bytes,
            max_bytes: u64::from(frame_bytes_max),
        });
    }
    let words = estimate_words(message).min(u64::from(frame_bytes_max) / WORD_BYTES as u64 + 64);
    // `words` is at most frame_bytes_max / 8 + 64, far below u32::MAX.
    let words = u32::try_from(words).unwrap_or(u32::MAX);
    let mut builder = Builder::new(HeapAllocator::new().first_segment_words(words.max(16)));
    let mut holes = Holes::default();
    build(message, &mut builder, page_bytes, &mut holes).map_err(|error| {
        TransportError::bad_message(message.kind().name(), format!("encoding: {error}"))
    })?;
    let mut encoded = Encoded {
        builder,
        holes: Vec::new(),
    };
    encoded
        .place_holes(holes)
        .map_err(|reason| TransportError::bad_message(message.kind().name(), reason))?;
    let len_bytes = encoded.payload_bytes() as u64;
    if len_bytes > u64::from(frame_bytes_max) {
        return Err(TransportError::FrameTooLarge {
            len_bytes,
            max_bytes: u64::from(frame_bytes_max),
        });
    }
    Ok(encoded)
}

/// Reads a `kind` message from `payload` (8-byte aligned, exactly one flat
/// Cap'n Proto message). `Data` fields become slices of `payload`.
pub(crate) fn decode(kind: MessageKind, payload: &Bytes) -> Result<Message, TransportError> {
    decode_inner(kind, payload, None)
}

/// Reads a Pages message whose page bytes came apart from the frame (by
/// RDMA); its `data` field must be empty.
#[cfg_attr(not(feature = "rdma"), allow(dead_code))]
pub(crate) fn decode_with_pages(
    kind: MessageKind,
    payload: &Bytes,
    page_bytes: Bytes,
) -> Result<Message, TransportError> {
    if kind != MessageKind::Pages {
        return Err(TransportError::bad_frame(format!(
            "RDMA payload on a {} frame",
            kind.name()
        )));
    }
    decode_inner(kind, payload, Some(page_bytes))
}

fn decode_inner(
    kind: MessageKind,
    payload: &Bytes,
    page_bytes: Option<Bytes>,
) -> Result<Message, TransportError> {
    let name = kind.name();
    let bad = |reason: String| TransportError::bad_message(name, reason);
    if payload.as_ptr() as usize % WORD_BYTES != 0 {
        return Err(bad("receive buffer is not 8-byte aligned".into()));
    }
    // Each word is visited about once; twice the payload bounds a message
    // that points several times at the same bytes.
    let options = ReaderOptions {
        traversal_limit_in_words: Some(payload.len() / WORD_BYTES * 2 + 1024),
        nesting_limit: 16,
    };
    let mut rest: &[u8] = payload;
    let reader = serialize::read_message_from_flat_slice(&mut rest, options)
        .map_err(|error| bad(error.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the message", rest.len())));
    }
    read(kind, payload, &reader, page_bytes).map_err(|error| match error {
        ReadError::Capnp(error) => bad(error.to_string()),
        ReadError::Invalid(reason) => bad(reason),
        ReadError::Transport(error) => error,
    })
}

/// Every byte of text and data in `message`: no encoding is shorter.
fn payload_bytes_lower_bound(message: &Message) -> u64 {
    let pages = |set: &PageSet| set.data().len() as u64 + set.len() as u64 * 4;
    let len = |bytes: usize| bytes as u64;
    match message {
        Message::Hello(hello) => len(hello.node_name.len()) + hello_auth_bytes(hello),
        Message::Offer(offer) => {
            len(offer.user.len() + offer.function.len() + offer.key.len())
                + len(offer.args.len() * 4 + offer.globals.len() * 16)
                + offer.inline_pages.as_ref().map_or(0, pages)
        }
        Message::Accept { .. } | Message::ObjectWritten { .. } => 0,
        Message::Decline { reason, .. } => len(reason.len()),
        Message::Pages(message) => pages(&message.pages),
        Message::Done(done) => len(done.globals.len() * 16) + pages(&done.dirty_pages),
        Message::ObjectRead { user, key, .. } => len(user.len() + key.len()),
        Message::ObjectData { data, .. } => len(data.len()),
        Message::ObjectWrite {
            user, key, data, ..
        } => len(user.len() + key.len() + data.len()),
        Message::Error { message, .. } => len(message.len()),
        Message::Module(module) => {
            len(module.user.len() + module.function.len())
                + len(module.hash.len() + module.wasm.len())
        }
        Message::ModuleStored { hash } => len(hash.len()),
        Message::ObjectList { user, .. } => len(user.len()),
        // Each entry's key, and its size as 8 bytes of data.
        Message::ObjectListing { entries } => {
            entries.iter().map(|entry| len(entry.key.len()) + 8).sum()
        }
        Message::ObjectDelete { user, key, .. } => len(user.len() + key.len()),
        Message::ObjectDeleted { .. } => 0,
        // Each range's offset and length, 8 bytes each.
        Message::FetchPages { .. } => 0,
        Message::StateUpdate(update) => {
            len(update.user.len() + update.key.len())
                + match &update.change {
                    StateChange::Ranges { ranges, data, .. } => {
                        len(data.len()) + ranges.len() as u64 * 16
                    }
                    StateChange::Append(data) => len(data.len()),
                }
        }
    }
}

/// Upper bound of the encoded words, so the message fits one segment.
fn estimate_words(message: &Message) -> u64 {
    fn blob(bytes: usize) -> u64 {
        (bytes as u64 + 1).div_ceil(WORD_BYTES as u64) + 1
    }
    fn list32(n: usize) -> u64 {
        (n as u64 * 4).div_ceil(WORD_BYTES as u64) + 1
    }
    fn globals(globals: &[Global]) -> u64 {
        globals.len() as u64 * 2 + 2
    }
    fn pages(set: &PageSet) -> u64 {
        8 + list32(set.len()) + blob(set.data().len())
    }
    // Root struct, segment slack and the list and struct headers.
    let base = 32;
    base + match message {
        Message::Hello(hello) => {
            blob(hello.node_name.len()) + 16 + 2 * blob(hello_auth_bytes(hello) as usize)
        }
        Message::Offer(offer) => {
            blob(offer.user.len())
                + blob(offer.function.len())
                + blob(offer.module_hash.len())
                + blob(offer.key.len())
                + list32(offer.args.len())
                + globals(&offer.globals)
                + offer.inline_pages.as_ref().map_or(0, pages)
        }
        Message::Accept { .. } | Message::ObjectWritten { .. } => 0,
        Message::Decline { reason, .. } => blob(reason.len()),
        Message::Pages(message) => pages(&message.pages),
        Message::Done(done) => globals(&done.globals) + pages(&done.dirty_pages),
        Message::ObjectRead { user, key, .. } => blob(user.len()) + blob(key.len()),
        Message::ObjectData { data, .. } => blob(data.len()),
        Message::ObjectWrite {
            user, key, data, ..
        } => blob(user.len()) + blob(key.len()) + blob(data.len()),
        Message::Error { message, .. } => blob(message.len()),
        Message::Module(module) => {
            blob(module.user.len())
                + blob(module.function.len())
                + blob(module.hash.len())
                + blob(module.wasm.len())
        }
        Message::ModuleStored { hash } => blob(hash.len()),
        Message::ObjectList { user, .. } => blob(user.len()),
        // The list's tag word, then per entry its struct (one data word, one
        // pointer) and its key.
        Message::ObjectListing { entries } => {
            1 + entries
                .iter()
                .map(|entry| 2 + blob(entry.key.len()))
                .sum::<u64>()
        }
        Message::ObjectDelete { user, key, .. } => blob(user.len()) + blob(key.len()),
        Message::ObjectDeleted { .. } => 0,
        Message::FetchPages { .. } => 0,
        Message::StateUpdate(update) => {
            blob(update.user.len())
                + blob(update.key.len())
                + match &update.change {
                    StateChange::Ranges { ranges, data, .. } => {
                        2 * (ranges.len() as u64 + 1) + blob(data.len())
                    }
                    StateChange::Append(data) => blob(data.len()),
                }
        }
    }
}

/// Lengths below are bounded by `frame_bytes_max` (checked by the caller),
/// so they fit the schema's u32 list sizes.
fn len32(len: usize) -> capnp::Result<u32> {
    u32::try_from(len).map_err(|_| capnp::Error::failed(format!("length {len} exceeds u32")))
}

fn build(
    message: &Message,
    builder: &mut Builder<HeapAllocator>,
    page_bytes: PageBytes,
    holes: &mut Holes,
) -> capnp::Result<()> {
    match message {
        Message::Hello(hello) => {
            let mut root = builder.init_root::<wire::hello::Builder>();
            root.set_version(hello.version);
            root.set_node_name(hello.node_name.as_str());
            root.set_capabilities(hello.capabilities.0);
            if let Some(nonce) = &hello.nonce {
                root.set_nonce(nonce);
            }
            if let Some(proof) = &hello.proof {
                root.set_proof(proof);
            }
            match &hello.rdma {
                None => root.init_rdma().set_none(()),
                Some(endpoint) => {
                    let mut out = root.init_rdma().init_endpoint();
                    out.set_qp_number(endpoint.qp_number);
                    out.set_packet_sequence(endpoint.packet_sequence);
                    out.set_lid(endpoint.lid);
                    out.set_gid(&endpoint.gid);
                    out.set_mtu(endpoint.mtu);
                    out.set_recv_address(endpoint.recv_address);
                    out.set_recv_key(endpoint.recv_key);
                    out.set_recv_bytes(endpoint.recv_bytes);
                }
            }
        }
        Message::Offer(offer) => {
            let mut root = builder.init_root::<wire::offer::Builder>();
            root.set_call_id(offer.call_id);
            root.set_user(offer.user.as_str());
            root.set_function(offer.function.as_str());
            root.set_module_hash(&offer.module_hash);
            root.set_key(&offer.key);
            root.set_funclet_index(offer.funclet_index);
            root.set_memory_pages(offer.memory_pages);
            root.set_wait_ms(offer.wait_ms);
            let mut args = root.reborrow().init_args(len32(offer.args.len())?);
            for (i, arg) in offer.args.iter().enumerate() {
                args.set(i as u32, *arg);
            }
            build_globals(
                root.reborrow().init_globals(len32(offer.globals.len())?),
                &offer.globals,
            );
            match &offer.inline_pages {
                None => root.init_inline_pages().set_none(()),
                Some(pages) => build_pages(
                    root.init_inline_pages().init_pages(),
                    pages,
                    page_bytes,
                    holes,
                )?,
            }
        }
        Message::Accept { call_id, slot } => {
            let mut root = builder.init_root::<wire::accept::Builder>();
            root.set_call_id(*call_id);
            root.set_slot(*slot);
        }
        Message::Decline { call_id, reason } => {
            let mut root = builder.init_root::<wire::decline::Builder>();
            root.set_call_id(*call_id);
            root.set_reason(reason.as_str());
        }
        Message::Pages(pages) => {
            let mut root = builder.init_root::<wire::pages::Builder>();
            root.set_call_id(pages.call_id);
            root.set_more(pages.more);
            build_pages(root.init_pages(), &pages.pages, page_bytes, holes)?;
        }
        Message::Done(done) => {
            let mut root = builder.init_root::<wire::done::Builder>();
            root.set_call_id(done.call_id);
            root.set_return_value(done.return_value);
            root.set_memory_pages(done.memory_pages);
            root.set_pages_to_follow(done.pages_to_follow);
            build_globals(
                root.reborrow().init_globals(len32(done.globals.len())?),
                &done.globals,
            );
            build_pages(
                root.init_dirty_pages(),
                &done.dirty_pages,
                page_bytes,
                holes,
            )?;
        }
        Message::ObjectRead {
            user,
            key,
            offset,
            len_max,
            store,
        } => {
            let mut root = builder.init_root::<wire::object_read::Builder>();
            root.set_user(user.as_str());
            root.set_key(key);
            root.set_offset(*offset);
            root.set_len_max(*len_max);
            root.set_store(store_to_wire(*store));
        }
        Message::ObjectData {
            found,
            object_bytes,
            offset,
            data,
        } => {
            let mut root = builder.init_root::<wire::object_data::Builder>();
            root.set_found(*found);
            root.set_object_bytes(*object_bytes);
            root.set_offset(*offset);
            if Holes::takes(data) {
                holes.record(root.init_data(len32(data.len())?), data);
            } else {
                root.set_data(data);
            }
        }
        Message::ObjectWrite {
            user,
            key,
            data,
            offset,
            total_bytes,
            write_id,
            store,
        } => {
            let mut root = builder.init_root::<wire::object_write::Builder>();
            root.set_user(user.as_str());
            root.set_key(key);
            root.set_offset(*offset);
            root.set_total_bytes(*total_bytes);
            root.set_write_id(*write_id);
            root.set_store(store_to_wire(*store));
            if Holes::takes(data) {
                holes.record(root.init_data(len32(data.len())?), data);
            } else {
                root.set_data(data);
            }
        }
        Message::ObjectWritten { object_bytes } => {
            let mut root = builder.init_root::<wire::object_written::Builder>();
            root.set_object_bytes(*object_bytes);
        }
        Message::Error { code, message } => {
            let mut root = builder.init_root::<wire::error::Builder>();
            root.set_code(error_code_to_wire(*code));
            root.set_message(message.as_str());
        }
        Message::Module(module) => {
            let mut root = builder.init_root::<wire::module_upload::Builder>();
            root.set_user(module.user.as_str());
            root.set_function(module.function.as_str());
            root.set_hash(&module.hash);
            root.set_wasm(&module.wasm);
        }
        Message::ModuleStored { hash } => {
            let mut root = builder.init_root::<wire::module_stored::Builder>();
            root.set_hash(hash);
        }
        Message::ObjectList { user, store } => {
            let mut root = builder.init_root::<wire::object_list::Builder>();
            root.set_user(user.as_str());
            root.set_store(store_to_wire(*store));
        }
        Message::ObjectListing { entries } => {
            let root = builder.init_root::<wire::object_listing::Builder>();
            let mut out = root.init_entries(len32(entries.len())?);
            for (i, entry) in entries.iter().enumerate() {
                let mut slot = out.reborrow().get(i as u32);
                slot.set_key(&entry.key);
                slot.set_size_bytes(entry.size_bytes);
            }
        }
        Message::ObjectDelete { user, key, store } => {
            let mut root = builder.init_root::<wire::object_delete::Builder>();
            root.set_user(user.as_str());
            root.set_key(key);
            root.set_store(store_to_wire(*store));
        }
        Message::ObjectDeleted { found } => {
            let mut root = builder.init_root::<wire::object_deleted::Builder>();
            root.set_found(*found);
        }
        Message::FetchPages { call_id } => {
            let mut root = builder.init_root::<wire::fetch_pages::Builder>();
            root.set_call_id(*call_id);
        }
        Message::StateUpdate(update) => {
            let mut root = builder.init_root::<wire::state_update::Builder>();
            root.set_user(update.user.as_str());
            root.set_key(&update.key);
            let data = match &update.change {
                StateChange::Ranges {
                    value_bytes,
                    ranges,
                    data,
                } => {
                    root.set_value_bytes(*value_bytes);
                    let n = len32(ranges.len())?;
                    {
                        let mut offsets = root.reborrow().init_offsets(n);
                        for (i, (offset, _)) in ranges.iter().enumerate() {
                            offsets.set(i as u32, *offset);
                        }
                    }
                    let mut lens = root.reborrow().init_lens(n);
                    for (i, (_, len)) in ranges.iter().enumerate() {
                        lens.set(i as u32, *len);
                    }
                    data
                }
                StateChange::Append(data) => {
                    root.set_append(true);
                    data
                }
            };
            if Holes::takes(data) {
                holes.record(root.init_data(len32(data.len())?), data);
            } else {
                root.set_data(data);
            }
        }
    }
    Ok(())
}

fn build_globals(
    mut out: capnp::struct_list::Builder<'_, wire::global::Owned>,
    globals: &[Global],
) {
    for (i, global) in globals.iter().enumerate() {
        let mut entry = out.reborrow().get(i as u32);
        entry.set_index(global.index);
        entry.set_bits(global.bits);
    }
}

fn build_pages(
    mut out: wire::page_set::Builder<'_>,
    pages: &PageSet,
    page_bytes: PageBytes,
    holes: &mut Holes,
) -> capnp::Result<()> {
    // Checked once more on the way out: a PageSet is built only through
    // PageSet::new, so this holds unless memory was corrupted.
    debug_assert_eq!(pages.data().len(), pages.len() * PAGE_BYTES);
    let mut indices = out.reborrow().init_indices(len32(pages.len())?);
    for (i, index) in pages.indices().iter().enumerate() {
        indices.set(i as u32, *index);
    }
    if page_bytes == PageBytes::Inline {
        let data = pages.data();
        if Holes::takes(data) {
            holes.record(out.init_data(len32(data.len())?), data);
        } else {
            out.set_data(data);
        }
    }
    Ok(())
}

fn error_code_to_wire(code: ErrorCode) -> wire::ErrorCode {
    match code {
        ErrorCode::Internal => wire::ErrorCode::Internal,
        ErrorCode::BadRequest => wire::ErrorCode::BadRequest,
        ErrorCode::NotFound => wire::ErrorCode::NotFound,
        ErrorCode::Trap => wire::ErrorCode::Trap,
        ErrorCode::VersionMismatch => wire::ErrorCode::VersionMismatch,
        ErrorCode::Unavailable => wire::ErrorCode::Unavailable,
        ErrorCode::Unauthenticated => wire::ErrorCode::Unauthenticated,
    }
}

fn store_to_wire(store: Store) -> wire::Store {
    match store {
        Store::Objects => wire::Store::Objects,
        Store::State => wire::Store::State,
    }
}

fn store_from_wire(store: wire::Store) -> Store {
    match store {
        wire::Store::Objects => Store::Objects,
        wire::Store::State => Store::State,
    }
}

fn error_code_from_wire(code: wire::ErrorCode) -> ErrorCode {
    match code {
        wire::ErrorCode::Internal => ErrorCode::Internal,
        wire::ErrorCode::BadRequest => ErrorCode::BadRequest,
        wire::ErrorCode::NotFound => ErrorCode::NotFound,
        wire::ErrorCode::Trap => ErrorCode::Trap,
        wire::ErrorCode::VersionMismatch => ErrorCode::VersionMismatch,
        wire::ErrorCode::Unavailable => ErrorCode::Unavailable,
        wire::ErrorCode::Unauthenticated => ErrorCode::Unauthenticated,
    }
}

/// Bytes of a Hello's nonce and proof.
fn hello_auth_bytes(hello: &Hello) -> u64 {
    (hello.nonce.map_or(0, |n| n.len()) + hello.proof.map_or(0, |p| p.len())) as u64
}

/// A Hello's nonce or proof: empty when absent, else exactly 32 bytes.
fn hello_field(name: &str, data: &[u8]) -> Result<Option<[u8; 32]>, ReadError> {
    if data.is_empty() {
        return Ok(None);
    }
    data.try_into().map(Some).map_err(|_| {
        ReadError::Invalid(format!("Hello {name} of {} bytes, expected 32", data.len()))
    })
}

enum ReadError {
    Capnp(capnp::Error),
    Invalid(String),
    Transport(TransportError),
}

impl From<capnp::Error> for ReadError {
    fn from(error: capnp::Error) -> Self {
        ReadError::Capnp(error)
    }
}

impl From<capnp::NotInSchema> for ReadError {
    fn from(error: capnp::NotInSchema) -> Self {
        ReadError::Invalid(format!("union or enum value {} not in schema", error.0))
    }
}

impl From<TransportError> for ReadError {
    fn from(error: TransportError) -> Self {
        ReadError::Transport(error)
    }
}

fn text(reader: capnp::Result<capnp::text::Reader<'_>>) -> Result<String, ReadError> {
    Ok(reader?
        .to_str()
        .map_err(|error| ReadError::Invalid(error.to_string()))?
        .to_owned())
}

/// `slice` as a view of `payload`, without copying. Cap'n Proto hands out
/// data pointing into the buffer it reads; anything else is refused rather
/// than trusted.
fn shared(payload: &Bytes, slice: &[u8]) -> Result<Bytes, ReadError> {
    if slice.is_empty() {
        return Ok(Bytes::new());
    }
    let start = payload.as_ptr() as usize;
    let at = slice.as_ptr() as usize;
    if at < start || at + slice.len() > start + payload.len() {
        return Err(ReadError::Invalid("data outside the frame".into()));
    }
    Ok(payload.slice(at - start..at - start + slice.len()))
}

/// A module hash is exactly 32 bytes (SHA-256); any other length is refused,
/// never padded or cut.
fn module_hash(bytes: &[u8]) -> Result<ModuleHash, ReadError> {
    bytes.try_into().map_err(|_| {
        ReadError::Invalid(format!("module hash of {} bytes, expected 32", bytes.len()))
    })
}

fn read_entries(
    payload: &Bytes,
    reader: capnp::struct_list::Reader<'_, wire::object_entry::Owned>,
) -> Result<Vec<ObjectEntry>, ReadError> {
    // Cap'n Proto lets a list of void or of empty structs claim elements it
    // does not carry (up to the traversal limit, twice the payload's words);
    // each would still cost an ObjectEntry here (32 bytes). An honest entry
    // takes at least a word (ours take two, plus the key), so more entries
    // than words is refused: at most 4 bytes of entries per payload byte.
    let words = payload.len() / WORD_BYTES;
    if reader.len() as usize > words {
        return Err(ReadError::Invalid(format!(
            "listing of {} entries in a payload of {words} words",
            reader.len()
        )));
    }
    let mut entries = Vec::with_capacity(reader.len() as usize);
    for entry in reader.iter() {
        entries.push(ObjectEntry {
            key: entry.get_key()?.to_vec(),
            size_bytes: entry.get_size_bytes(),
        });
    }
    Ok(entries)
}

fn read_globals(reader: capnp::struct_list::Reader<'_, wire::global::Owned>) -> Vec<Global> {
    reader
        .iter()
        .map(|global| Global {
            index: global.get_index(),
            bits: global.get_bits(),
        })
        .collect()
}

fn read_pages(
    payload: &Bytes,
    reader: wire::page_set::Reader<'_>,
    page_bytes: Option<Bytes>,
) -> Result<PageSet, ReadError> {
    let indices: Vec<u32> = reader.get_indices()?.iter().collect();
    let inline = reader.get_data()?;
    let data = match page_bytes {
        None => shared(payload, inline)?,
        Some(_) if !inline.is_empty() => {
            return Err(ReadError::Invalid(
                "page bytes both inline and apart".into(),
            ))
        }
        Some(bytes) => bytes,
    };
    Ok(PageSet::new(indices, data)?)
}

fn read(
    kind: MessageKind,
    payload: &Bytes,
    reader: &capnp::message::Reader<serialize::BufferSegments<&[u8]>>,
    page_bytes: Option<Bytes>,
) -> Result<Message, ReadError> {
    Ok(match kind {
        MessageKind::Hello => {
            let root: wire::hello::Reader = reader.get_root()?;
            let node_name = text(root.get_node_name())?;
            if node_name.len() > limits::NODE_NAME_BYTES_MAX {
                return Err(ReadError::Invalid(format!(
                    "node name of {} bytes exceeds {}",
                    node_name.len(),
                    limits::NODE_NAME_BYTES_MAX
                )));
            }
            let rdma = match root.get_rdma().which()? {
                wire::hello::rdma::None(()) => None,
                wire::hello::rdma::Endpoint(endpoint) => {
                    let endpoint = endpoint?;
                    let gid = endpoint.get_gid()?;
                    let gid: [u8; 16] = gid.try_into().map_err(|_| {
                        ReadError::Invalid(format!("gid of {} bytes, expected 16", gid.len()))
                    })?;
                    Some(RdmaEndpoint {
                        qp_number: endpoint.get_qp_number(),
                        packet_sequence: endpoint.get_packet_sequence(),
                        lid: endpoint.get_lid(),
                        gid,
                        mtu: endpoint.get_mtu(),
                        recv_address: endpoint.get_recv_address(),
                        recv_key: endpoint.get_recv_key(),
                        recv_bytes: endpoint.get_recv_bytes(),
                    })
                }
            };
            Message::Hello(Hello {
                version: root.get_version(),
                node_name,
                capabilities: Capabilities(root.get_capabilities()),
                rdma,
                nonce: hello_field("nonce", root.get_nonce()?)?,
                proof: hello_field("proof", root.get_proof()?)?,
            })
        }
        MessageKind::Offer => {
            let root: wire::offer::Reader = reader.get_root()?;
            let module_hash = module_hash(root.get_module_hash()?)?;
            let inline_pages = match root.get_inline_pages().which()? {
                wire::offer::inline_pages::None(()) => None,
                wire::offer::inline_pages::Pages(pages) => Some(read_pages(payload, pages?, None)?),
            };
            Message::Offer(Offer {
                call_id: root.get_call_id(),
                user: text(root.get_user())?,
                function: text(root.get_function())?,
                module_hash,
                key: root.get_key()?.to_vec(),
                funclet_index: root.get_funclet_index(),
                args: root.get_args()?.iter().collect(),
                memory_pages: root.get_memory_pages(),
                globals: read_globals(root.get_globals()?),
                inline_pages,
                wait_ms: root.get_wait_ms(),
            })
        }
        MessageKind::Accept => {
            let root: wire::accept::Reader = reader.get_root()?;
            Message::Accept {
                call_id: root.get_call_id(),
                slot: root.get_slot(),
            }
        }
        MessageKind::Decline => {
            let root: wire::decline::Reader = reader.get_root()?;
            Message::Decline {
                call_id: root.get_call_id(),
                reason: text(root.get_reason())?,
            }
        }
        MessageKind::Pages => {
            let root: wire::pages::Reader = reader.get_root()?;
            Message::Pages(Pages {
                call_id: root.get_call_id(),
                pages: read_pages(payload, root.get_pages()?, page_bytes)?,
                more: root.get_more(),
            })
        }
        MessageKind::Done => {
            let root: wire::done::Reader = reader.get_root()?;
            Message::Done(Done {
                call_id: root.get_call_id(),
                return_value: root.get_return_value(),
                globals: read_globals(root.get_globals()?),
                memory_pages: root.get_memory_pages(),
                dirty_pages: read_pages(payload, root.get_dirty_pages()?, None)?,
                pages_to_follow: root.get_pages_to_follow(),
            })
        }
        MessageKind::ObjectRead => {
            let root: wire::object_read::Reader = reader.get_root()?;
            Message::ObjectRead {
                user: text(root.get_user())?,
                key: root.get_key()?.to_vec(),
                offset: root.get_offset(),
                len_max: root.get_len_max(),
                store: store_from_wire(root.get_store()?),
            }
        }
        MessageKind::ObjectData => {
            let root: wire::object_data::Reader = reader.get_root()?;
            Message::ObjectData {
                found: root.get_found(),
                object_bytes: root.get_object_bytes(),
                offset: root.get_offset(),
                data: shared(payload, root.get_data()?)?,
            }
        }
        MessageKind::ObjectWrite => {
            let root: wire::object_write::Reader = reader.get_root()?;
            Message::ObjectWrite {
                user: text(root.get_user())?,
                key: root.get_key()?.to_vec(),
                data: shared(payload, root.get_data()?)?,
                offset: root.get_offset(),
                total_bytes: root.get_total_bytes(),
                write_id: root.get_write_id(),
                store: store_from_wire(root.get_store()?),
            }
        }
        MessageKind::ObjectWritten => {
            let root: wire::object_written::Reader = reader.get_root()?;
            Message::ObjectWritten {
                object_bytes: root.get_object_bytes(),
            }
        }
        MessageKind::Error => {
            let root: wire::error::Reader = reader.get_root()?;
            Message::Error {
                code: error_code_from_wire(root.get_code()?),
                message: text(root.get_message())?,
            }
        }
        MessageKind::Module => {
            let root: wire::module_upload::Reader = reader.get_root()?;
            Message::Module(ModuleUpload {
                user: text(root.get_user())?,
                function: text(root.get_function())?,
                hash: module_hash(root.get_hash()?)?,
                wasm: shared(payload, root.get_wasm()?)?,
            })
        }
        MessageKind::ModuleStored => {
            let root: wire::module_stored::Reader = reader.get_root()?;
            Message::ModuleStored {
                hash: module_hash(root.get_hash()?)?,
            }
        }
        MessageKind::ObjectList => {
            let root: wire::object_list::Reader = reader.get_root()?;
            Message::ObjectList {
                user: text(root.get_user())?,
                store: store_from_wire(root.get_store()?),
            }
        }
        MessageKind::ObjectListing => {
            let root: wire::object_listing::Reader = reader.get_root()?;
            Message::ObjectListing {
                entries: read_entries(payload, root.get_entries()?)?,
            }
        }
        MessageKind::ObjectDelete => {
            let root: wire::object_delete::Reader = reader.get_root()?;
            Message::ObjectDelete {
                user: text(root.get_user())?,
                key: root.get_key()?.to_vec(),
                store: store_from_wire(root.get_store()?),
            }
        }
        MessageKind::ObjectDeleted => {
            let root: wire::object_deleted::Reader = reader.get_root()?;
            Message::ObjectDeleted {
                found: root.get_found(),
            }
        }
        MessageKind::FetchPages => {
            let root: wire::fetch_pages::Reader = reader.get_root()?;
            Message::FetchPages {
                call_id: root.get_call_id(),
            }
        }
        MessageKind::StateUpdate => {
            let root: wire::state_update::Reader = reader.get_root()?;
            Message::StateUpdate(read_state_update(payload, root)?)
        }
    })
}

/// A StateUpdate whose ranges are checked: as many offsets as lengths,
/// lengths adding up to the data, every range inside the value.
fn read_state_update(
    payload: &Bytes,
    root: wire::state_update::Reader<'_>,
) -> Result<StateUpdate, ReadError> {
    let data = shared(payload, root.get_data()?)?;
    let offsets = root.get_offsets()?;
    let lens = root.get_lens()?;
    let change = if root.get_append() {
        if !offsets.is_empty() || !lens.is_empty() {
            return Err(ReadError::Invalid(
                "StateUpdate appends and also names ranges".into(),
            ));
        }
        StateChange::Append(data)
    } else {
        if offsets.len() != lens.len() {
            return Err(ReadError::Invalid(format!(
                "StateUpdate has {} offsets and {} lengths",
                offsets.len(),
                lens.len()
            )));
        }
        let value_bytes = root.get_value_bytes();
        let mut ranges = Vec::with_capacity(offsets.len() as usize);
        let mut sum = 0u64;
        for i in 0..offsets.len() {
            let (offset, len) = (offsets.get(i), lens.get(i));
            match offset.checked_add(len) {
                Some(end) if end <= value_bytes => {}
                _ => {
                    return Err(ReadError::Invalid(format!(
                        "StateUpdate range [{offset}, +{len}) is outside the value's {value_bytes} bytes"
                    )))
                }
            }
            sum = sum.saturating_add(len);
            ranges.push((offset, len));
        }
        if sum != data.len() as u64 {
            return Err(ReadError::Invalid(format!(
                "StateUpdate ranges add up to {sum} bytes, its data has {}",
                data.len()
            )));
        }
        StateChange::Ranges {
            value_bytes,
            ranges,
            data,
        }
    };
    Ok(StateUpdate {
        user: text(root.get_user())?,
        key: root.get_key()?.to_vec(),
        change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, FrameFlags};
    use crate::limits::FRAME_BYTES_MAX;
    use crate::testing;

    fn round_trip(message: &Message) -> Result<(Frame, Message), TransportError> {
        let bytes = Frame::encode_to_vec(1, FrameFlags::NONE, message, FRAME_BYTES_MAX)?;
        let frame = Frame::decode_from_slice(&bytes, FRAME_BYTES_MAX)?;
        let decoded = frame.message()?;
        Ok((frame, decoded))
    }

    /// Decodes a message built by hand (to say what our encoder never would).
    fn decode_built(
        kind: MessageKind,
        builder: &Builder<HeapAllocator>,
    ) -> Result<Message, TransportError> {
        let payload = serialize::write_message_to_words(builder);
        let mut buffer = crate::frame::AlignedBuf::zeroed(payload.len());
        buffer.as_mut_bytes().copy_from_slice(&payload);
        decode(kind, &Bytes::from_owner(buffer))
    }

    /// Whether `data` is a view of the frame's receive buffer, not a copy.
    fn inside(frame: &Frame, data: &Bytes) -> bool {
        let start = frame.payload.as_ptr() as usize;
        let at = data.as_ptr() as usize;
        !data.is_empty() && at >= start && at + data.len() <= start + frame.payload.len()
    }

    #[test]
    fn every_kind_decodes_to_what_was_encoded() -> Result<(), TransportError> {
        let messages = testing::every_kind();
        // The samples cover every kind (testing's own check is a
        // debug_assert, off in release builds).
        for kind in MessageKind::ALL {
            assert!(
                messages.iter().any(|message| message.kind() == kind),
                "no sample {}",
                kind.name()
            );
        }
        for message in messages {
            let (frame, decoded) = round_trip(&message)?;
            assert_eq!(frame.header.kind, message.kind());
            assert_eq!(decoded, message);
        }
        Ok(())
    }

    #[test]
    fn large_data_is_sent_from_the_message_not_copied() -> Result<(), TransportError> {
        let data = Bytes::from(
            (0..(1usize << 20))
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        let small = Bytes::from(vec![7u8; HOLE_BYTES_MIN - 1]);
        for (data, holes) in [(data, 1), (small, 0)] {
            let message = Message::ObjectWrite {
                user: "u".into(),
                key: b"k".to_vec(),
                data: data.clone(),
                offset: 3,
                total_bytes: 9,
                write_id: 4,
                store: Store::Objects,
            };
            let encoded = encode(&message, FRAME_BYTES_MAX)?;
            assert_eq!(encoded.holes().len(), holes);
            if let Some(hole) = encoded.holes().first() {
                // The hole is the message's own memory, and its place in the
                // segment was left untouched.
                assert_eq!(hole.data.as_ptr(), data.as_ptr());
                let segment = &encoded.segments()[hole.segment];
                assert!(segment[hole.offset..hole.offset + data.len()]
                    .iter()
                    .all(|&b| b == 0));
            }
            let (_, decoded) = round_trip(&message)?;
            assert_eq!(decoded, message);
        }
        Ok(())
    }

    #[test]
    fn encoding_is_one_segment() -> Result<(), TransportError> {
        for message in testing::every_kind() {
            let encoded = encode(&message, FRAME_BYTES_MAX)?;
            assert_eq!(encoded.segments().len(), 1, "{:?}", message.kind());
        }
        Ok(())
    }

    #[test]
    fn page_and_object_bytes_are_not_copied_out_of_the_frame() -> Result<(), TransportError> {
        let (frame, decoded) = round_trip(&Message::Pages(Pages {
            call_id: 1,
            pages: testing::pages(16),
            more: false,
        }))?;
        let Message::Pages(pages) = decoded else {
            return Err(TransportError::bad_message(
                "Pages",
                "decoded to another kind",
            ));
        };
        assert!(inside(&frame, pages.pages.data()));
        let (frame, decoded) = round_trip(&Message::ObjectData {
            found: true,
            object_bytes: 5,
            offset: 0,
            data: Bytes::from_static(b"hello"),
        })?;
        let Message::ObjectData { data, .. } = decoded else {
            return Err(TransportError::bad_message(
                "ObjectData",
                "decoded to another kind",
            ));
        };
        assert!(inside(&frame, &data));
        Ok(())
    }

    #[test]
    fn module_wasm_is_not_copied_out_of_the_frame() -> Result<(), TransportError> {
        let sent = testing::module_upload();
        let (frame, decoded) = round_trip(&Message::Module(sent.clone()))?;
        let Message::Module(module) = decoded else {
            return Err(TransportError::bad_message(
                "ModuleUpload",
                "decoded to another kind",
            ));
        };
        assert!(inside(&frame, &module.wasm));
        assert_eq!(module.wasm, sent.wasm);
        Ok(())
    }

    #[test]
    fn module_hashes_not_32_bytes_long_are_refused() -> Result<(), TransportError> {
        type Build = fn(&mut Builder<HeapAllocator>, &[u8]);
        let cases: [(MessageKind, Build); 3] = [
            (MessageKind::Offer, |builder, hash| {
                builder
                    .init_root::<wire::offer::Builder>()
                    .set_module_hash(hash)
            }),
            (MessageKind::Module, |builder, hash| {
                let mut root = builder.init_root::<wire::module_upload::Builder>();
                root.set_hash(hash);
                root.set_wasm(b"\0asm\x01\0\0\0");
            }),
            (MessageKind::ModuleStored, |builder, hash| {
                builder
                    .init_root::<wire::module_stored::Builder>()
                    .set_hash(hash)
            }),
        ];
        for (kind, build) in cases {
            for len in [0, 31, 33, 64] {
                let mut builder = Builder::new_default();
                build(&mut builder, &vec![0x5a; len]);
                match decode_built(kind, &builder) {
                    Err(TransportError::BadMessage { reason, .. }) => assert!(
                        reason.contains(&format!("module hash of {len} bytes, expected 32")),
                        "{}: {reason}",
                        kind.name()
                    ),
                    other => panic!("{}, {len}-byte hash: got {other:?}", kind.name()),
                }
            }
            // The same message with a 32-byte hash decodes.
            let mut builder = Builder::new_default();
            build(&mut builder, &[0x5a; 32]);
            decode_built(kind, &builder)?;
        }
        Ok(())
    }

    #[test]
    fn an_object_request_without_a_store_addresses_objects() -> Result<(), TransportError> {
        // What a sender that predates the field builds: no `store` set.
        let mut builder = Builder::new_default();
        {
            let mut root = builder.init_root::<wire::object_delete::Builder>();
            root.set_user("u");
            root.set_key(b"k");
        }
        assert_eq!(
            decode_built(MessageKind::ObjectDelete, &builder)?,
            Message::ObjectDelete {
                user: "u".into(),
                key: b"k".to_vec(),
                store: Store::Objects,
            }
        );
        let mut builder = Builder::new_default();
        {
            let mut root = builder.init_root::<wire::object_read::Builder>();
            root.set_user("u");
            root.set_key(b"k");
            root.set_store(wire::Store::State);
        }
        let Message::ObjectRead { store, .. } = decode_built(MessageKind::ObjectRead, &builder)?
        else {
            panic!("an ObjectRead decoded as another kind");
        };
        assert_eq!(store, Store::State);
        Ok(())
    }

    #[test]
    fn an_empty_listing_round_trips() -> Result<(), TransportError> {
        let message = Message::ObjectListing {
            entries: Vec::new(),
        };
        assert_eq!(round_trip(&message)?.1, message);
        Ok(())
    }

    #[test]
    fn listings_claiming_more_entries_than_they_carry_are_refused() -> Result<(), TransportError> {
        // A root ObjectListing whose entries pointer is a list of 1,000 voids:
        // valid Cap'n Proto, within the traversal limit, but 1,000 entries
        // from a 3-word payload.
        let root_pointer: u64 = 1 << 48; // struct, no data words, one pointer
        let void_list: u64 = 1 | (1_000 << 35); // list, element size void
        let mut buffer = crate::frame::AlignedBuf::zeroed(24);
        let bytes = buffer.as_mut_bytes();
        bytes[..8].copy_from_slice(&[0, 0, 0, 0, 2, 0, 0, 0]); // one segment of 2 words
        bytes[8..16].copy_from_slice(&root_pointer.to_le_bytes());
        bytes[16..].copy_from_slice(&void_list.to_le_bytes());
        match decode(MessageKind::ObjectListing, &Bytes::from_owner(buffer)) {
            Err(TransportError::BadMessage { reason, .. }) => {
                assert!(reason.contains("1000 entries"), "{reason}")
            }
            other => panic!("expected BadMessage, got {:?}", other.map(|m| m.kind())),
        }
        Ok(())
    }

    #[test]
    fn inconsistent_page_sets_are_refused_on_decode() -> Result<(), TransportError> {
        // Build a Pages message by hand whose data is one byte short.
        let mut builder = Builder::new_default();
        {
            let mut root = builder.init_root::<wire::pages::Builder>();
            root.set_call_id(1);
            let mut pages = root.init_pages();
            pages.reborrow().init_indices(1).set(0, 4);
            pages.set_data(&[0u8; PAGE_BYTES - 1]);
        }
        match decode_built(MessageKind::Pages, &builder) {
            Err(TransportError::BadMessage { reason, .. }) => {
                assert!(reason.contains("4096"), "{reason}")
            }
            other => panic!("expected BadMessage, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn state_updates_with_ranges_that_do_not_fit_are_refused() {
        // (offsets, lens, value bytes, data bytes, append) and what the
        // refusal must say.
        type Case = (
            &'static [u64],
            &'static [u64],
            u64,
            usize,
            bool,
            &'static str,
        );
        let cases: [Case; 5] = [
            (&[0, 10], &[4], 100, 4, false, "2 offsets and 1 lengths"),
            (&[98], &[4], 100, 4, false, "outside the value's 100 bytes"),
            (&[u64::MAX], &[2], u64::MAX, 2, false, "outside the value"),
            (
                &[0, 50],
                &[4, 4],
                100,
                7,
                false,
                "add up to 8 bytes, its data has 7",
            ),
            (&[0], &[1], 0, 1, true, "appends and also names ranges"),
        ];
        for (offsets, lens, value_bytes, data, append, says) in cases {
            let mut builder = Builder::new_default();
            {
                let mut root = builder.init_root::<wire::state_update::Builder>();
                root.set_user("u");
                root.set_key(b"k");
                root.set_append(append);
                root.set_value_bytes(value_bytes);
                let mut out = root.reborrow().init_offsets(offsets.len() as u32);
                for (i, offset) in offsets.iter().enumerate() {
                    out.set(i as u32, *offset);
                }
                let mut out = root.reborrow().init_lens(lens.len() as u32);
                for (i, len) in lens.iter().enumerate() {
                    out.set(i as u32, *len);
                }
                root.set_data(&vec![1u8; data]);
            }
            match decode_built(MessageKind::StateUpdate, &builder) {
                Err(TransportError::BadMessage { reason, .. }) => {
                    assert!(reason.contains(says), "{reason} (expected: {says})")
                }
                other => panic!("expected BadMessage ({says}), got {other:?}"),
            }
        }
    }

    #[test]
    fn messages_over_the_limit_are_refused_before_encoding() {
        let message = Message::ObjectWrite {
            user: "u".into(),
            key: b"k".to_vec(),
            data: Bytes::from(vec![0u8; 4096]),
            offset: 0,
            total_bytes: 4096,
            write_id: 0,
            store: Store::Objects,
        };
        assert!(matches!(
            encode(&message, 1024),
            Err(TransportError::FrameTooLarge {
                max_bytes: 1024,
                ..
            })
        ));
    }

    /// Flipped bytes anywhere in valid frames: every outcome is a message
    /// or an error, never a panic.
    #[test]
    fn corrupted_payloads_never_panic() -> Result<(), TransportError> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut outcomes = [0usize; 2];
        for message in testing::every_kind() {
            let bytes = Frame::encode_to_vec(1, FrameFlags::NONE, &message, FRAME_BYTES_MAX)?;
            let payload = &bytes[crate::limits::FRAME_HEADER_BYTES..];
            for _ in 0..2_000 {
                let mut corrupt = payload.to_vec();
                for _ in 0..1 + next() % 4 {
                    let at = (next() % corrupt.len() as u64) as usize;
                    corrupt[at] = next() as u8;
                }
                let mut buffer = crate::frame::AlignedBuf::zeroed(corrupt.len());
                buffer.as_mut_bytes().copy_from_slice(&corrupt);
                let result = decode(message.kind(), &Bytes::from_owner(buffer));
                outcomes[usize::from(result.is_err())] += 1;
            }
        }
        // Both outcomes occur: the corruption reaches the decoder's checks.
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
        Ok(())
    }
}
