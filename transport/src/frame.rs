//! Frames: a fixed header and one Cap'n Proto message, on a byte stream.
//!
//! ```text
//! offset  bytes  field
//!      0      4  magic "FRRY"
//!      4      1  frame format version (1)
//!      5      1  message kind (MessageKind)
//!      6      2  flags (bit 0: response, bit 1: payload bytes came by RDMA)
//!      8      8  correlation id: a response carries its request's
//!     16      4  payload length in bytes, a multiple of 8, at most frame_bytes_max
//!     20      4  reserved, zero
//!     24      -  payload: Cap'n Proto flat message (segment table, segments)
//! ```
//! All integers little-endian. The header is 24 bytes so the payload starts
//! word-aligned for a reader that maps the stream straight into memory.
//!
//! A reader checks every header field, and the length against
//! `frame_bytes_max`, before it allocates the payload; a header that fails
//! ends the connection (the stream can no longer be trusted to be in step).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::timer::Timer;

use crate::codec::{self, Encoded};
use crate::error::TransportError;
use crate::limits::{FRAME_COALESCE_BYTES_MAX, FRAME_HEADER_BYTES, FRAME_PROGRESS_TICK_MS};
use crate::message::{Message, MessageKind};

pub const FRAME_MAGIC: [u8; 4] = *b"FRRY";
pub const FRAME_VERSION: u8 = 1;

/// Header flag bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameFlags(pub u16);

impl FrameFlags {
    pub const NONE: FrameFlags = FrameFlags(0);
    /// The frame answers the request with the same correlation id.
    pub const RESPONSE: FrameFlags = FrameFlags(1);
    /// The message's page bytes were RDMA-written into the receiver's
    /// registered buffer; the frame carries the rest.
    pub const RDMA_PAYLOAD: FrameFlags = FrameFlags(2);
    const KNOWN: u16 = FrameFlags::RESPONSE.0 | FrameFlags::RDMA_PAYLOAD.0;

    pub fn contains(self, other: FrameFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: FrameFlags) -> FrameFlags {
        FrameFlags(self.0 | other.0)
    }
}

/// The fixed part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: MessageKind,
    pub flags: FrameFlags,
    pub correlation_id: u64,
    pub payload_bytes: u32,
}

impl FrameHeader {
    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0u8; FRAME_HEADER_BYTES];
        out[0..4].copy_from_slice(&FRAME_MAGIC);
        out[4] = FRAME_VERSION;
        out[5] = self.kind as u8;
        out[6..8].copy_from_slice(&self.flags.0.to_le_bytes());
        out[8..16].copy_from_slice(&self.correlation_id.to_le_bytes());
        out[16..20].copy_from_slice(&self.payload_bytes.to_le_bytes());
        out
    }

    /// Checks every field; `frame_bytes_max` bounds the payload the caller
    /// is about to allocate.
    pub fn parse(
        bytes: &[u8; FRAME_HEADER_BYTES],
        frame_bytes_max: u32,
    ) -> Result<FrameHeader, TransportError> {
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if bytes[0..4] != FRAME_MAGIC {
            return Err(TransportError::bad_frame(format!(
                "magic {:02x?}, expected {:02x?}",
                &bytes[0..4],
                FRAME_MAGIC
            )));
        }
        if bytes[4] != FRAME_VERSION {
            return Err(TransportError::bad_frame(format!(
                "frame version {}, expected {FRAME_VERSION}",
                bytes[4]
            )));
        }
        let kind = MessageKind::from_wire(bytes[5])
            .ok_or_else(|| TransportError::bad_frame(format!("unknown kind {}", bytes[5])))?;
        let flags = u16_at(6);
        if flags & !FrameFlags::KNOWN != 0 {
            return Err(TransportError::bad_frame(format!(
                "unknown flags {flags:#06x}"
            )));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[8..16]);
        let payload_bytes = u32_at(16);
        if payload_bytes > frame_bytes_max {
            return Err(TransportError::FrameTooLarge {
                len_bytes: u64::from(payload_bytes),
                max_bytes: u64::from(frame_bytes_max),
            });
        }
        // The smallest Cap'n Proto message is a segment table and a root
        // pointer: two words.
        if payload_bytes % 8 != 0 || payload_bytes < 16 {
            return Err(TransportError::bad_frame(format!(
                "payload of {payload_bytes} bytes is not a whole number of words of at least 2"
            )));
        }
        let reserved = u32_at(20);
        if reserved != 0 {
            return Err(TransportError::bad_frame(format!(
                "reserved field is {reserved:#x}, expected 0"
            )));
        }
        Ok(FrameHeader {
            kind,
            flags: FrameFlags(flags),
            correlation_id: u64::from_le_bytes(id),
            payload_bytes,
        })
    }
}

/// A received frame. `payload` is the 8-byte aligned receive buffer; the
/// decoded message's page and object bytes are slices of it.
#[derive(Clone, Debug)]
pub struct Frame {
    pub header: FrameHeader,
    pub payload: Bytes,
}

impl Frame {
    pub fn message(&self) -> Result<Message, TransportError> {
        codec::decode(self.header.kind, &self.payload)
    }

    /// The whole frame as one buffer: for captures, tools and tests. The
    /// connection path writes without this copy.
    pub fn encode_to_vec(
        correlation_id: u64,
        flags: FrameFlags,
        message: &Message,
        frame_bytes_max: u32,
    ) -> Result<Vec<u8>, TransportError> {
        let frame = OutgoingFrame::new(correlation_id, flags, message, frame_bytes_max)?;
        let mut out = Vec::with_capacity(frame.frame_bytes());
        out.extend_from_slice(&frame.prefix());
        for segment in frame.encoded.segments_filled() {
            out.extend_from_slice(&segment);
        }
        Ok(out)
    }

    /// Parses one whole frame from `bytes` (copied into an aligned buffer).
    pub fn decode_from_slice(bytes: &[u8], frame_bytes_max: u32) -> Result<Frame, TransportError> {
        let Some((head, rest)) = bytes.split_first_chunk::<FRAME_HEADER_BYTES>() else {
            return Err(TransportError::bad_frame(format!(
                "{} bytes is shorter than a header",
                bytes.len()
            )));
        };
        let header = FrameHeader::parse(head, frame_bytes_max)?;
        if rest.len() != header.payload_bytes as usize {
            return Err(TransportError::bad_frame(format!(
                "payload is {} bytes, header says {}",
                rest.len(),
                header.payload_bytes
            )));
        }
        let mut buffer = AlignedBuf::zeroed(rest.len());
        buffer.as_mut_bytes().copy_from_slice(rest);
        Ok(Frame {
            header,
            payload: Bytes::from_owner(buffer),
        })
    }
}

/// A frame encoded and waiting to be written.
pub(crate) struct OutgoingFrame {
    header: FrameHeader,
    encoded: Encoded,
}

impl OutgoingFrame {
    pub(crate) fn new(
        correlation_id: u64,
        flags: FrameFlags,
        message: &Message,
        frame_bytes_max: u32,
    ) -> Result<OutgoingFrame, TransportError> {
        OutgoingFrame::with_page_bytes(
            correlation_id,
            flags,
            message,
            frame_bytes_max,
            codec::PageBytes::Inline,
        )
    }

    pub(crate) fn with_page_bytes(
        correlation_id: u64,
        flags: FrameFlags,
        message: &Message,
        frame_bytes_max: u32,
        page_bytes: codec::PageBytes,
    ) -> Result<OutgoingFrame, TransportError> {
        let encoded = codec::encode_with(message, frame_bytes_max, page_bytes)?;
        // encode() refused anything over frame_bytes_max, a u32.
        let payload_bytes =
            u32::try_from(encoded.payload_bytes()).map_err(|_| TransportError::FrameTooLarge {
                len_bytes: encoded.payload_bytes() as u64,
                max_bytes: u64::from(frame_bytes_max),
            })?;
        Ok(OutgoingFrame {
            header: FrameHeader {
                kind: message.kind(),
                flags,
                correlation_id,
                payload_bytes,
            },
            encoded,
        })
    }

    fn frame_bytes(&self) -> usize {
        FRAME_HEADER_BYTES + self.header.payload_bytes as usize
    }

    /// Header and Cap'n Proto segment table: everything before the segments.
    fn prefix(&self) -> Vec<u8> {
        let segments = self.encoded.segments();
        let count = segments.len();
        let table_words = (count / 2) + 1;
        // A small frame's segments are appended to the prefix and sent in
        // one write: room for them now saves a reallocation per frame.
        let capacity = if self.frame_bytes() <= FRAME_COALESCE_BYTES_MAX {
            self.frame_bytes()
        } else {
            FRAME_HEADER_BYTES + table_words * 8
        };
        let mut prefix = Vec::with_capacity(capacity);
        prefix.extend_from_slice(&self.header.to_bytes());
        // Segment count minus one, then each segment's length in words,
        // padded to a whole word.
        prefix.extend_from_slice(&((count as u32).wrapping_sub(1)).to_le_bytes());
        for segment in segments.iter() {
            prefix.extend_from_slice(&((segment.len() / 8) as u32).to_le_bytes());
        }
        if count % 2 == 0 {
            prefix.extend_from_slice(&[0; 4]);
        }
        prefix
    }

    /// Writes the frame. Small frames go out in one write; big ones as the
    /// prefix and then each segment, straight from the message's memory.
    /// Fails when none of its bytes leaves for `stall_limit`.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(
        &self,
        out: &mut W,
        stall_limit: Duration,
    ) -> Result<(), TransportError> {
        let mut prefix = self.prefix();
        debug_assert_eq!(
            prefix.len() - FRAME_HEADER_BYTES
                + self
                    .encoded
                    .segments()
                    .iter()
                    .map(|s| s.len())
                    .sum::<usize>(),
            self.header.payload_bytes as usize
        );
        let mut progress = Progress::new(stall_limit);
        if self.frame_bytes() <= FRAME_COALESCE_BYTES_MAX {
            // Frames this small have no holes (HOLE_BYTES_MIN in codec.rs).
            debug_assert!(self.encoded.holes().is_empty());
            for segment in self.encoded.segments().iter() {
                prefix.extend_from_slice(segment);
            }
            write_full(out, &prefix, &mut progress).await?;
        } else {
            write_full(out, &prefix, &mut progress).await?;
            let holes = self.encoded.holes();
            let mut next_hole = 0;
            for (i, segment) in self.encoded.segments().iter().enumerate() {
                // The segment's own bytes around its holes, the holes' bytes
                // from the message's memory.
                let mut at = 0;
                while let Some(hole) = holes.get(next_hole).filter(|hole| hole.segment == i) {
                    write_full(out, &segment[at..hole.offset], &mut progress).await?;
                    write_full(out, &hole.data, &mut progress).await?;
                    at = hole.offset + hole.data.len();
                    next_hole += 1;
                }
                write_full(out, &segment[at..], &mut progress).await?;
            }
            debug_assert_eq!(next_hole, holes.len());
        }
        out.flush()
            .await
            .map_err(|error| stream_error("writing a frame", error))
    }
}

/// Reads one frame. Waits as long as it takes for a header (an idle
/// connection is fine); once the header is in, the rest of the frame must
/// keep arriving: the connection fails when no byte of it has come for
/// `stall_limit`, however long the whole frame takes.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    input: &mut R,
    frame_bytes_max: u32,
    stall_limit: Duration,
) -> Result<Frame, TransportError> {
    let mut head = [0u8; FRAME_HEADER_BYTES];
    let first = input
        .read(&mut head)
        .await
        .map_err(|error| stream_error("reading frame header", error))?;
    if first == 0 {
        return Err(TransportError::PeerClosed);
    }
    if first < head.len() {
        // A header split across packets: the rest is due like the payload.
        read_full(
            input,
            &mut head[first..],
            stall_limit,
            "reading frame header",
        )
        .await?;
    }
    let header = FrameHeader::parse(&head, frame_bytes_max)?;
    let mut buffer = AlignedBuf::for_payload(header.payload_bytes as usize);
    read_full(
        input,
        buffer.as_mut_bytes(),
        stall_limit,
        "reading frame payload",
    )
    .await?;
    Ok(Frame {
        header,
        payload: Bytes::from_owner(buffer),
    })
}

/// Watches one frame's bytes while its I/O waits. A frame fails only when
/// no byte of it has moved for `limit`: a slow but steady peer (a 16 MiB
/// frame at 1 MB/s takes 16 s) is fine, a stopped one is not.
///
/// While the I/O waits, a tick every [`FRAME_PROGRESS_TICK_MS`] polls it
/// again whether or not its readiness was signalled. glommio 0.9 can leave
/// a shard asleep with a readiness poll not yet seen (observed: a storage
/// shard asleep in `io_uring_enter` with 1.3 MB unread in the socket until
/// an unrelated timer fired 10 s later); the tick bounds that wait to one
/// tick. The tick is armed only once the I/O has had to wait, so a frame
/// that arrives or leaves in one go costs no timer.
struct Progress {
    limit: Duration,
    last_moved: Instant,
    tick: Option<Timer>,
}

impl Progress {
    fn new(limit: Duration) -> Progress {
        Progress {
            limit,
            last_moved: Instant::now(),
            tick: None,
        }
    }

    fn moved(&mut self) {
        self.last_moved = Instant::now();
    }

    /// Called after the I/O returned `Pending`. `Ready(Ok)`: the tick fired
    /// and bytes moved within the limit, so poll the I/O again; `Ready(Err)`:
    /// nothing moved for the limit.
    fn poll_tick(
        &mut self,
        cx: &mut Context<'_>,
        op: &'static str,
    ) -> Poll<Result<(), TransportError>> {
        let tick = self.tick.get_or_insert_with(|| Timer::new(PROGRESS_TICK));
        if Pin::new(&mut *tick).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let idle = self.last_moved.elapsed();
        if idle >= self.limit {
            return Poll::Ready(Err(stream_error(
                op,
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("stalled: no byte moved for {} ms", idle.as_millis()),
                ),
            )));
        }
        tick.reset(PROGRESS_TICK);
        Poll::Ready(Ok(()))
    }
}

const PROGRESS_TICK: Duration = Duration::from_millis(FRAME_PROGRESS_TICK_MS);

/// Fills `buf` from `input`, failing when nothing arrives for `stall_limit`.
async fn read_full<R: AsyncRead + Unpin>(
    input: &mut R,
    buf: &mut [u8],
    stall_limit: Duration,
    op: &'static str,
) -> Result<(), TransportError> {
    let mut filled = 0;
    let mut progress = Progress::new(stall_limit);
    std::future::poll_fn(|cx| loop {
        while filled < buf.len() {
            match Pin::new(&mut *input).poll_read(cx, &mut buf[filled..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(TransportError::PeerClosed)),
                Poll::Ready(Ok(read)) => {
                    filled += read;
                    progress.moved();
                }
                Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(stream_error(op, error))),
                Poll::Pending => break,
            }
        }
        if filled == buf.len() {
            return Poll::Ready(Ok(()));
        }
        match progress.poll_tick(cx, op) {
            Poll::Ready(Ok(())) => {} // look at the socket again
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

/// Writes all of `buf` to `out`, with `progress` watching for a stall.
async fn write_full<W: AsyncWrite + Unpin>(
    out: &mut W,
    buf: &[u8],
    progress: &mut Progress,
) -> Result<(), TransportError> {
    const OP: &str = "writing a frame";
    let mut written = 0;
    std::future::poll_fn(|cx| loop {
        while written < buf.len() {
            match Pin::new(&mut *out).poll_write(cx, &buf[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(TransportError::PeerClosed)),
                Poll::Ready(Ok(sent)) => {
                    written += sent;
                    progress.moved();
                }
                Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(stream_error(OP, error))),
                Poll::Pending => break,
            }
        }
        if written == buf.len() {
            return Poll::Ready(Ok(()));
        }
        match progress.poll_tick(cx, OP) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

/// Writes queued frames, each whole, until every sender is gone; a frame
/// fails when none of its bytes leaves for `stall_limit`. An error ends the
/// loop: the stream is no longer in step.
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    mut output: W,
    frames: glommio::channels::local_channel::LocalReceiver<OutgoingFrame>,
    stall_limit: Duration,
) -> Result<(), TransportError> {
    while let Some(frame) = frames.recv().await {
        frame.write_to(&mut output, stall_limit).await?;
    }
    Ok(())
}

/// A dead peer reads as `PeerClosed`; anything else keeps its I/O error.
pub(crate) fn stream_error(op: &'static str, error: io::Error) -> TransportError {
    match error.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => TransportError::PeerClosed,
        _ => TransportError::io(op, error),
    }
}

/// A byte buffer on an 8-byte boundary, as Cap'n Proto reads in place.
/// Backed by `u64`s, so the alignment comes from the allocator.
pub(crate) struct AlignedBuf {
    words: Vec<u64>,
    len_bytes: usize,
}

/// Receive buffers of at least this size are kept for reuse when their frame
/// is dropped: a fresh 64 MiB buffer costs ~16k page faults as the payload
/// lands, a reused one none.
const POOLED_BYTES_MIN: usize = 1 << 20;
/// What one thread keeps for reuse, at most.
const POOL_BUFFERS_MAX: usize = 4;
const POOL_BYTES_MAX: usize = 256 << 20;

thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<u64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl AlignedBuf {
    /// A buffer for a payload that a read will fill completely before
    /// anything looks at it: large ones come from this thread's pool
    /// (holding an earlier frame's bytes, all overwritten by the read).
    pub(crate) fn for_payload(len_bytes: usize) -> AlignedBuf {
        let words_needed = len_bytes.div_ceil(8);
        if len_bytes >= POOLED_BYTES_MIN {
            let reused = POOL.with(|pool| {
                let mut pool = pool.borrow_mut();
                let best = pool
                    .iter()
                    .enumerate()
                    .filter(|(_, words)| {
                        words.len() >= words_needed && words.len() <= 2 * words_needed
                    })
                    .min_by_key(|(_, words)| words.len())
                    .map(|(i, _)| i)?;
                Some(pool.swap_remove(best))
            });
            if let Some(words) = reused {
                return AlignedBuf { words, len_bytes };
            }
        }
        AlignedBuf::zeroed(len_bytes)
    }

    /// Zeroed: for a large buffer the allocator maps fresh zero pages, so
    /// this costs page faults as the payload lands, not a memset.
    pub(crate) fn zeroed(len_bytes: usize) -> AlignedBuf {
        AlignedBuf {
            words: vec![0u64; len_bytes.div_ceil(8)],
            len_bytes,
        }
    }

    pub(crate) fn as_mut_bytes(&mut self) -> &mut [u8] {
        // SAFETY: `words` owns at least `len_bytes` initialised bytes (its
        // length in words is rounded up), u8 has no alignment requirement and
        // every bit pattern is a valid u8 and a valid u64.
        unsafe {
            std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len_bytes)
        }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let bytes = self.words.len() * 8;
        if bytes < POOLED_BYTES_MIN {
            return;
        }
        let words = std::mem::take(&mut self.words);
        // `try_with`: a buffer dropped while its thread exits is just freed.
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            let pooled: usize = pool.iter().map(|w| w.len() * 8).sum();
            if pool.len() < POOL_BUFFERS_MAX && pooled + bytes <= POOL_BYTES_MAX {
                pool.push(words);
            }
        });
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: as in `as_mut_bytes`, read-only.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len_bytes) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::FRAME_BYTES_MAX;

    #[test]
    fn large_receive_buffers_are_reused_and_bounded() {
        let first = AlignedBuf::for_payload(2 << 20);
        let ptr = first.words.as_ptr();
        drop(first);
        // A slightly smaller frame reuses it; a much larger one cannot.
        let again = AlignedBuf::for_payload((2 << 20) - 100);
        assert_eq!(again.words.as_ptr(), ptr);
        assert_eq!(again.as_ref().len(), (2 << 20) - 100);
        let larger = AlignedBuf::for_payload(8 << 20);
        assert_ne!(larger.words.as_ptr(), ptr);
        drop((again, larger));
        // Small buffers are not pooled; the pool keeps a bounded number.
        let many: Vec<_> = (0..8).map(|_| AlignedBuf::for_payload(1 << 20)).collect();
        drop(many);
        POOL.with(|pool| assert!(pool.borrow().len() <= POOL_BUFFERS_MAX));
        drop(AlignedBuf::for_payload(100));
        POOL.with(|pool| {
            assert!(pool
                .borrow()
                .iter()
                .all(|w| w.len() * 8 >= POOLED_BYTES_MIN))
        });
    }

    fn header_bytes(edit: impl FnOnce(&mut [u8; FRAME_HEADER_BYTES])) -> [u8; FRAME_HEADER_BYTES] {
        let mut bytes = FrameHeader {
            kind: MessageKind::Offer,
            flags: FrameFlags::RESPONSE,
            correlation_id: 0x0102_0304_0506_0708,
            payload_bytes: 64,
        }
        .to_bytes();
        edit(&mut bytes);
        bytes
    }

    #[test]
    fn header_round_trip() -> Result<(), TransportError> {
        let header = FrameHeader::parse(&header_bytes(|_| {}), FRAME_BYTES_MAX)?;
        assert_eq!(header.kind, MessageKind::Offer);
        assert_eq!(header.flags, FrameFlags::RESPONSE);
        assert_eq!(header.correlation_id, 0x0102_0304_0506_0708);
        assert_eq!(header.payload_bytes, 64);
        Ok(())
    }

    #[test]
    fn header_checks_every_field() {
        type Edit = fn(&mut [u8; FRAME_HEADER_BYTES]);
        let cases: [(&str, Edit, &str); 8] = [
            ("magic", |b| b[0] = b'X', "magic"),
            ("version", |b| b[4] = 2, "frame version 2"),
            ("kind zero", |b| b[5] = 0, "unknown kind 0"),
            // MessageKind::ALL is dense (checked in message.rs): 19 kinds.
            ("kind past the last", |b| b[5] = 20, "unknown kind 20"),
            ("flags", |b| b[6] = 0x80, "unknown flags"),
            ("length not words", |b| b[16] = 65, "whole number of words"),
            ("length too short", |b| b[16] = 8, "whole number of words"),
            ("reserved", |b| b[21] = 1, "reserved"),
        ];
        for (name, edit, expected) in cases {
            match FrameHeader::parse(&header_bytes(edit), FRAME_BYTES_MAX) {
                Err(TransportError::BadFrame { reason }) => {
                    assert!(reason.contains(expected), "{name}: {reason}")
                }
                other => panic!("{name}: expected BadFrame, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_kind_past_the_last_is_the_one_tested_above() {
        assert_eq!(MessageKind::ALL.len(), 19);
    }

    #[test]
    fn oversize_length_is_refused_before_allocation() {
        let bytes = header_bytes(|b| b[16..20].copy_from_slice(&u32::MAX.to_le_bytes()));
        match FrameHeader::parse(&bytes, FRAME_BYTES_MAX) {
            Err(TransportError::FrameTooLarge {
                len_bytes,
                max_bytes,
            }) => {
                assert_eq!(len_bytes, u64::from(u32::MAX));
                assert_eq!(max_bytes, u64::from(FRAME_BYTES_MAX));
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
    }

    #[test]
    fn whole_frame_round_trip() -> Result<(), TransportError> {
        let message = Message::Decline {
            call_id: 9,
            reason: "busy".into(),
        };
        let bytes = Frame::encode_to_vec(5, FrameFlags::RESPONSE, &message, FRAME_BYTES_MAX)?;
        assert_eq!(bytes.len() % 8, 0);
        let frame = Frame::decode_from_slice(&bytes, FRAME_BYTES_MAX)?;
        assert_eq!(frame.header.correlation_id, 5);
        assert_eq!(frame.message()?, message);
        // Truncated by one word: refused, not misread.
        assert!(matches!(
            Frame::decode_from_slice(&bytes[..bytes.len() - 8], FRAME_BYTES_MAX),
            Err(TransportError::BadFrame { .. })
        ));
        Ok(())
    }

    #[test]
    fn payload_buffer_is_word_aligned() {
        for len in [16, 24, 4096, 1 << 20] {
            let buffer = AlignedBuf::zeroed(len);
            assert_eq!(buffer.as_ref().as_ptr() as usize % 8, 0);
            assert_eq!(buffer.as_ref().len(), len);
        }
    }
}
