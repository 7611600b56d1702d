//! Large frames over a link that delivers in paced bursts, and to a peer that
//! reads slowly in small pieces, arrive whole: a connection is closed only
//! when bytes stop moving for the configured time, never because a frame
//! that keeps moving takes longer than that in all. The raw peers here are
//! plain blocking sockets on their own threads, so their pace does not
//! depend on the executor under test.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use common::{config, hello, run};
use ferry_transport::limits::{FRAME_BYTES_MAX, FRAME_HEADER_BYTES};
use ferry_transport::{serve, Connection, Frame, FrameFlags, FrameHeader, Message};

const OBJECT_BYTES: usize = 16 << 20;

fn object_write(len: usize) -> Message {
    Message::ObjectWrite {
        user: "slow".into(),
        key: b"paced".to_vec(),
        data: Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
        offset: 0,
        total_bytes: len as u64,
        write_id: 7,
        store: ferry_transport::Store::Objects,
    }
}

/// Reads one frame off a blocking socket, `piece_bytes` at a time with
/// `pause` after each piece.
fn read_frame_slowly(
    stream: &mut TcpStream,
    piece_bytes: usize,
    pause: Duration,
) -> anyhow::Result<Frame> {
    let mut head = [0u8; FRAME_HEADER_BYTES];
    stream.read_exact(&mut head).context("reading a header")?;
    let header = FrameHeader::parse(&head, FRAME_BYTES_MAX)?;
    let mut whole = head.to_vec();
    whole.resize(FRAME_HEADER_BYTES + header.payload_bytes as usize, 0);
    let mut at = FRAME_HEADER_BYTES;
    while at < whole.len() {
        let end = (at + piece_bytes).min(whole.len());
        let read = stream
            .read(&mut whole[at..end])
            .context("reading a payload")?;
        if read == 0 {
            bail!("the peer closed at byte {at} of {}", whole.len());
        }
        at += read;
        std::thread::sleep(pause);
    }
    Ok(Frame::decode_from_slice(&whole, FRAME_BYTES_MAX)?)
}

fn write_frame(
    stream: &mut TcpStream,
    id: u64,
    flags: FrameFlags,
    message: &Message,
) -> anyhow::Result<()> {
    let bytes = Frame::encode_to_vec(id, flags, message, FRAME_BYTES_MAX)?;
    stream.write_all(&bytes).context("writing a frame")
}

/// A server whose link delivers 16 MiB frames in 64 KiB bursts, a burst
/// every 2 ms (~32 MB/s, as a token bucket with a 64 KiB bucket paces it):
/// the reader, idle between bursts, must wake for each one. The server's
/// stall limit is 300 ms and a frame takes ~0.55 s in all, with no pause
/// near the limit: every frame is answered.
#[test]
fn paced_bursts_reach_a_server_whole() -> anyhow::Result<()> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_server = stop.clone();
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        // Built as a node builds its shards (runtime/src/node.rs).
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("paced-server")
            .io_memory(2 << 20)
            .preempt_timer(Duration::from_millis(2))
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(1))
            .spawn(move || async move {
                let (listener, addr) = common::bind()?;
                addr_tx.send(addr)?;
                let mut server_config = config("paced-server");
                server_config.frame_read_ms_max = 300;
                let serving = serve(listener, server_config, |request| async move {
                    match request {
                        Message::ObjectWrite { data, .. } => Message::ObjectWritten {
                            object_bytes: data.len() as u64,
                        },
                        other => other,
                    }
                });
                // Serves until the client below is done.
                let stopping = async {
                    while !stop_server.load(Ordering::Relaxed) {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(())
                };
                futures_lite::future::or(
                    async { serving.await.map_err(anyhow::Error::from) },
                    stopping,
                )
                .await
            })
            .map_err(std::io::Error::from)?;
        executor.join().map_err(std::io::Error::from)?
    });
    let addr = addr_rx.recv().context("waiting for the server's address");
    let addr = match addr {
        Ok(addr) => addr,
        Err(error) => {
            stop.store(true, Ordering::Relaxed);
            return Err(error);
        }
    };
    let mut stream = TcpStream::connect(addr).context("connecting")?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write_frame(&mut stream, 1, FrameFlags::NONE, &hello("paced-client"))?;
    let answer = read_frame_slowly(&mut stream, 1 << 20, Duration::ZERO)?;
    ensure!(
        matches!(answer.message()?, Message::Hello(_)),
        "no Hello back"
    );

    for round in 0..4u64 {
        let bytes = Frame::encode_to_vec(
            10 + round,
            FrameFlags::NONE,
            &object_write(OBJECT_BYTES),
            FRAME_BYTES_MAX,
        )?;
        let started = Instant::now();
        for burst in bytes.chunks(64 << 10) {
            stream.write_all(burst).context("writing a burst")?;
            std::thread::sleep(Duration::from_millis(2));
        }
        let answer = read_frame_slowly(&mut stream, 1 << 20, Duration::ZERO)
            .with_context(|| format!("round {round}: waiting for the answer"))?;
        ensure!(
            answer.message()?
                == Message::ObjectWritten {
                    object_bytes: OBJECT_BYTES as u64
                },
            "round {round}: answered {:?}",
            answer.message()?
        );
        ensure!(
            started.elapsed() > Duration::from_millis(300),
            "round {round}: the frame took {:?}, no longer than the stall limit",
            started.elapsed()
        );
    }
    drop(stream);
    stop.store(true, Ordering::Relaxed);
    match server.join() {
        Ok(result) => result,
        Err(_) => bail!("the server thread panicked"),
    }
}

/// A client sends a 16 MiB frame to a peer that reads it 16 KiB at a time
/// with a pause after each piece, ~3 s in all, while the client's write
/// limit is 1 s of no progress: the frame arrives whole.
#[test]
fn a_slow_reader_receives_a_large_frame_whole() -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding")?;
    let addr = listener.local_addr()?;
    let peer = std::thread::spawn(move || -> anyhow::Result<usize> {
        let (mut stream, _) = listener.accept().context("accepting")?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let frame = read_frame_slowly(&mut stream, 1 << 20, Duration::ZERO)?;
        write_frame(
            &mut stream,
            frame.header.correlation_id,
            FrameFlags::RESPONSE,
            &hello("slow-reader"),
        )?;
        let frame = read_frame_slowly(&mut stream, 16 << 10, Duration::from_micros(2_500))?;
        let Message::ObjectWrite { data, .. } = frame.message()? else {
            bail!("expected an ObjectWrite, got {:?}", frame.header.kind);
        };
        write_frame(
            &mut stream,
            frame.header.correlation_id,
            FrameFlags::RESPONSE,
            &Message::ObjectWritten {
                object_bytes: data.len() as u64,
            },
        )?;
        Ok(data.len())
    });
    run(move || async move {
        let mut client_config = config("fast-writer");
        client_config.frame_write_ms_max = 1_000;
        let connection = Connection::connect(addr, &client_config).await?;
        let started = Instant::now();
        let answer = connection
            .request(&object_write(OBJECT_BYTES), Duration::from_secs(60))
            .await
            .context("sending 16 MiB to a slow reader")?;
        ensure!(
            answer
                == Message::ObjectWritten {
                    object_bytes: OBJECT_BYTES as u64
                },
            "answered {answer:?}"
        );
        // The pace was slow enough for the old whole-frame limit to matter.
        ensure!(
            started.elapsed() > Duration::from_secs(1),
            "read in {:?}",
            started.elapsed()
        );
        Ok(())
    })?;
    match peer.join() {
        Ok(received) => ensure!(received? == OBJECT_BYTES, "short read"),
        Err(_) => bail!("the peer thread panicked"),
    }
    Ok(())
}
