//! A frame header that announces a huge payload closes the connection with
//! `FrameTooLarge` and allocates nothing for it, on either side. A counting
//! allocator watches the largest allocation; this binary holds one test so
//! nothing else allocates meanwhile.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{bail, ensure};
use common::{
    accept, accept_hello, bind, closed_within, config, connect, read_raw_frame, run, send_hello,
    PATIENCE_MS,
};
use ferry_transport::limits::FRAME_BYTES_MAX;
use ferry_transport::{
    serve, Connection, FrameFlags, FrameHeader, Message, MessageKind, TransportError,
};
use futures_lite::AsyncWriteExt;

struct Counting;

static LARGEST_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only
// records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_BYTES.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Far below the 4 GiB the headers announce, and below any real frame here.
const ALLOCATION_BYTES_MAX: usize = 1 << 20;

/// A header for a payload of `u32::MAX - 7` bytes (word-aligned, so only the
/// size check can refuse it).
fn huge_header(flags: FrameFlags, id: u64) -> [u8; 24] {
    FrameHeader {
        kind: MessageKind::ObjectData,
        flags,
        correlation_id: id,
        payload_bytes: u32::MAX - 7,
    }
    .to_bytes()
}

#[test]
fn oversize_frames_close_the_connection_without_allocating() -> anyhow::Result<()> {
    run(|| async {
        // Client side: the server answers with a huge header.
        let (listener, addr) = bind()?;
        let _server = glommio::spawn_local(async move {
            let mut stream = accept(&listener).await?;
            accept_hello(&mut stream).await?;
            let request = read_raw_frame(&mut stream).await?;
            stream
                .write_all(&huge_header(
                    FrameFlags::RESPONSE,
                    request.header.correlation_id,
                ))
                .await?;
            closed_within(&mut stream, 10_000).await;
            anyhow::Ok(())
        });
        let connection = Connection::connect(addr, &config("client")).await?;
        LARGEST_BYTES.store(0, Ordering::Relaxed);
        let answer = connection
            .request(
                &Message::ObjectWritten { object_bytes: 1 },
                Duration::from_secs(10),
            )
            .await;
        let largest = LARGEST_BYTES.load(Ordering::Relaxed);
        match answer {
            Err(TransportError::FrameTooLarge {
                len_bytes,
                max_bytes,
            }) => {
                ensure!(len_bytes == u64::from(u32::MAX - 7));
                ensure!(max_bytes == u64::from(FRAME_BYTES_MAX));
            }
            other => bail!("expected FrameTooLarge, got {other:?}"),
        }
        ensure!(
            !connection.is_alive(),
            "the connection outlived a bad frame"
        );
        ensure!(
            largest < ALLOCATION_BYTES_MAX,
            "allocated {largest} bytes at once"
        );

        // Server side: a client sends a huge header after its Hello.
        let (listener, addr) = bind()?;
        let _server =
            glommio::spawn_local(serve(listener, config("server"), |request| async move {
                request
            }));
        let mut stream = connect(addr).await?;
        send_hello(&mut stream).await?;
        LARGEST_BYTES.store(0, Ordering::Relaxed);
        stream.write_all(&huge_header(FrameFlags::NONE, 2)).await?;
        ensure!(
            closed_within(&mut stream, PATIENCE_MS).await,
            "the server kept the connection"
        );
        let largest = LARGEST_BYTES.load(Ordering::Relaxed);
        ensure!(
            largest < ALLOCATION_BYTES_MAX,
            "the server allocated {largest} bytes at once"
        );
        // And serves the next client.
        let connection = Connection::connect(addr, &config("client")).await?;
        let message = Message::ObjectWritten { object_bytes: 3 };
        ensure!(
            connection
                .request(&message, Duration::from_secs(10))
                .await?
                == message
        );
        // The counter does see big allocations: a 2 MiB answer needs one.
        let big = Message::ObjectWrite {
            user: "u".into(),
            key: b"k".to_vec(),
            data: bytes::Bytes::from(vec![1u8; 2 << 20]),
            offset: 0,
            total_bytes: 2 << 20,
            write_id: 0,
            store: ferry_transport::Store::Objects,
        };
        LARGEST_BYTES.store(0, Ordering::Relaxed);
        ensure!(connection.request(&big, Duration::from_secs(10)).await? == big);
        let largest = LARGEST_BYTES.load(Ordering::Relaxed);
        ensure!(
            largest >= 2 << 20,
            "a 2 MiB round trip allocated at most {largest} bytes at once"
        );
        Ok(())
    })
}
