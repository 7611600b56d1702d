//! `ferry-bench floor`: the floor of an HTTP call, a bare hyper 1 HTTP/1.1
//! server that runs no wasm. It reads each request's body to its end and
//! answers 200 with a two-byte body (`OK`, with a Content-Length), whatever
//! the method and path, on keep-alive connections. Everything runs on one
//! thread: a current-thread tokio runtime accepts the connections and
//! drives every one of them, so the process uses one core at most, like
//! one ferry shard.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Args)]
pub struct FloorArgs {
    /// Port to listen on (0 picks a free one; see --ready-file).
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Write the bound address as JSON (`{"http": "HOST:PORT"}`) here once
    /// the server accepts connections.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// The answer's body.
const ANSWER: &[u8] = b"OK";

/// Serves until the process is killed.
pub fn run(args: &FloorArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("building the current-thread tokio runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: &FloorArgs) -> Result<()> {
    let address = format!("{}:{}", args.bind, args.port);
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    let bound = listener
        .local_addr()
        .context("reading the listener's address")?;
    if let Some(path) = &args.ready_file {
        let ready = serde_json::json!({ "http": bound.to_string() });
        std::fs::write(path, format!("{ready}\n"))
            .with_context(|| format!("writing the ready file {}", path.display()))?;
    }
    eprintln!("ferry-bench floor: serving HTTP/1.1 on {bound} (one thread)");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors or a connection reset before it was
            // taken: the listener itself is fine, keep accepting.
            Err(error) => {
                eprintln!("ferry-bench floor: accepting a connection: {error}");
                continue;
            }
        };
        tokio::spawn(connection(stream, peer));
    }
}

/// One keep-alive connection, until the client closes it.
async fn connection(stream: TcpStream, peer: SocketAddr) {
    // Answers are one small write each: send them at once.
    let _ = stream.set_nodelay(true);
    let served = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo(stream), service_fn(answer))
        .await;
    if let Err(error) = served {
        // A client that drops its connection mid-request is not the
        // server's failure; say so and go on with the others.
        if !error.is_incomplete_message() {
            eprintln!("ferry-bench floor: connection from {peer}: {error}");
        }
    }
}

/// Reads the request's body to its end, then answers 200 `OK`.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    request.into_body().collect().await?;
    Ok(Response::new(Full::new(Bytes::from_static(ANSWER))))
}

/// hyper's I/O traits over a tokio TCP stream.
struct TokioIo(TcpStream);

impl hyper::rt::Read for TokioIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: tokio's `ReadBuf` only ever writes initialised bytes into
        // the uninitialised spare capacity it is given and reports how many
        // it filled; exactly that many are then marked filled in hyper's
        // cursor below.
        let filled = unsafe {
            let mut spare = ReadBuf::uninit(buf.as_mut());
            match Pin::new(&mut self.0).poll_read(cx, &mut spare) {
                Poll::Ready(Ok(())) => spare.filled().len(),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        };
        // SAFETY: the stream initialised `filled` bytes at the start of the
        // cursor's spare capacity.
        unsafe { buf.advance(filled) };
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for TokioIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The floor answers ferry-bench's POST (and a GET) with 200 `OK` on one
    /// keep-alive connection.
    #[test]
    fn answers_posts_on_a_kept_alive_connection() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("ferry-floor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let ready = dir.join("ready");
        let args = FloorArgs {
            port: 0,
            bind: "127.0.0.1".into(),
            ready_file: Some(ready.clone()),
        };
        std::thread::spawn(move || run(&args));
        let mut address = None;
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
                    address = json["http"].as_str().map(str::to_string);
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let address = address.context("the floor wrote no ready file")?;
        let mut stream = std::net::TcpStream::connect(&address)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let body = r#"{"user":"test","function":"noop"}"#;
        for request in [
            format!(
                "POST /f/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ] {
            stream.write_all(request.as_bytes())?;
            let mut answer = Vec::new();
            let mut chunk = [0u8; 1024];
            while !answer.ends_with(b"\r\n\r\nOK") {
                let n = stream.read(&mut chunk)?;
                anyhow::ensure!(n > 0, "connection closed after {answer:?}");
                answer.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(
                text.to_ascii_lowercase().contains("content-length: 2\r\n"),
                "{text}"
            );
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
