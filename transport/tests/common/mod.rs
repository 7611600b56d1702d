//! Helpers shared by the transport's integration tests: an executor per
//! test, and a raw peer that speaks frames byte by byte so tests can break
//! the protocol on purpose.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use ferry_transport::limits::{FRAME_BYTES_MAX, FRAME_HEADER_BYTES};
use ferry_transport::{
    Capabilities, Frame, FrameFlags, FrameHeader, Hello, Message, TransportConfig, PROTOCOL_VERSION,
};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, Placement};

/// Runs `test` on a fresh glommio executor thread.
pub fn run<F, Fut>(test: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + 'static,
{
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("transport-test")
        .spawn(test)
        .map_err(std::io::Error::from)
        .context("starting a glommio executor")?;
    executor
        .join()
        .map_err(std::io::Error::from)
        .context("joining the test executor")?
}

/// glommio's errors are not `Sync`; tests carry them as `io::Error`.
pub fn g<T>(result: Result<T, glommio::GlommioError<()>>) -> std::io::Result<T> {
    result.map_err(std::io::Error::from)
}

/// A listener on 127.0.0.1, port chosen by the kernel.
pub fn bind() -> anyhow::Result<(glommio::net::TcpListener, SocketAddr)> {
    let listener = g(glommio::net::TcpListener::bind(loopback())).context("binding 127.0.0.1:0")?;
    let addr = g(listener.local_addr())?;
    Ok((listener, addr))
}

pub async fn accept(listener: &glommio::net::TcpListener) -> anyhow::Result<TcpStream> {
    g(listener.accept().await).context("accepting")
}

pub async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    g(TcpStream::connect(addr).await).context("connecting")
}

pub fn config(name: &str) -> TransportConfig {
    let mut config = TransportConfig::new(name);
    config.capabilities = Capabilities::OFFLOAD.with(Capabilities::OBJECTS);
    config
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Reads one whole frame off a raw stream.
pub async fn read_raw_frame(stream: &mut TcpStream) -> anyhow::Result<Frame> {
    let mut head = [0u8; FRAME_HEADER_BYTES];
    stream
        .read_exact(&mut head)
        .await
        .context("reading a header")?;
    let header = FrameHeader::parse(&head, FRAME_BYTES_MAX)?;
    let mut whole = head.to_vec();
    whole.resize(FRAME_HEADER_BYTES + header.payload_bytes as usize, 0);
    stream
        .read_exact(&mut whole[FRAME_HEADER_BYTES..])
        .await
        .context("reading a payload")?;
    Ok(Frame::decode_from_slice(&whole, FRAME_BYTES_MAX)?)
}

pub async fn write_message(
    stream: &mut TcpStream,
    id: u64,
    flags: FrameFlags,
    message: &Message,
) -> anyhow::Result<()> {
    let bytes = Frame::encode_to_vec(id, flags, message, FRAME_BYTES_MAX)?;
    stream.write_all(&bytes).await.context("writing a frame")?;
    Ok(())
}

pub fn hello(name: &str) -> Message {
    Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        node_name: name.into(),
        capabilities: Capabilities::NONE,
        rdma: None,
        nonce: None,
        proof: None,
    })
}

/// Plays the accepting side of the Hello exchange on a raw stream.
pub async fn accept_hello(stream: &mut TcpStream) -> anyhow::Result<Hello> {
    let frame = read_raw_frame(stream).await?;
    let Message::Hello(peer) = frame.message()? else {
        bail!("expected Hello first, got {:?}", frame.header.kind);
    };
    write_message(
        stream,
        frame.header.correlation_id,
        FrameFlags::RESPONSE,
        &hello("raw-server"),
    )
    .await?;
    Ok(peer)
}

/// Plays the connecting side of the Hello exchange on a raw stream.
pub async fn send_hello(stream: &mut TcpStream) -> anyhow::Result<Hello> {
    write_message(stream, 1, FrameFlags::NONE, &hello("raw-client")).await?;
    let frame = read_raw_frame(stream).await?;
    match frame.message()? {
        Message::Hello(peer) => Ok(peer),
        other => bail!("expected Hello back, got {other:?}"),
    }
}

/// How long a test waits for something that should happen at once: far
/// longer than it takes on a loaded machine, so reaching it means the
/// thing never happens, not that the machine was slow.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// [`PATIENCE`] in milliseconds, for [`closed_within`].
pub const PATIENCE_MS: u64 = 30_000;

/// Waits until `done()` holds, looking every millisecond; fails naming
/// `what` after [`PATIENCE`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !done() {
        if std::time::Instant::now() > deadline {
            bail!("waited {PATIENCE:?} for {what}");
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    Ok(())
}

/// True once the peer has closed the stream (EOF or reset) within `ms`.
pub async fn closed_within(stream: &mut TcpStream, ms: u64) -> bool {
    let mut byte = [0u8; 1];
    let read = async {
        loop {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    };
    let give_up = async {
        glommio::timer::sleep(std::time::Duration::from_millis(ms)).await;
        false
    };
    futures_lite::future::or(read, give_up).await
}
