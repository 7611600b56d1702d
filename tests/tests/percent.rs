//! Object paths are percent-decoded strictly (RFC 3986: `%` and two hex
//! digits): a malformed escape is a 400, never a byte the client did not
//! write. The old hand-written decoder took `%+1` as 0x01.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_tests::{Node, NodeOptions};

/// Sends `method path` with `body` as raw HTTP/1.1 (no client library
/// between the test and the bytes of the path); returns status and body.
fn raw(addr: &str, method: &str, path: &str, body: &[u8]) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).context("connecting")?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status in {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}

#[test]
fn a_malformed_percent_escape_is_refused_with_400() -> Result<()> {
    let node = Node::start(NodeOptions::default())?;
    for path in [
        "/o/test/a%+1",
        "/o/test/a%-1",
        "/o/test/a%2",
        "/o/test/a%zz",
        "/o/test/50%",
        "/o/te%+1st/key",
    ] {
        for method in ["PUT", "GET", "DELETE"] {
            let (status, body) = raw(&node.upload, method, path, b"bytes")?;
            ensure!(
                status == 400,
                "{method} {path}: {status} {body:?}, wanted 400"
            );
        }
    }
    // Nothing was stored under a decoded name.
    let listing = node.get(&node.upload, "/o/test/")?;
    ensure!(listing.text() == "[]", "stored: {}", listing.text());

    // Well-formed escapes decode, in either case of hex digit.
    let (status, body) = raw(&node.upload, "PUT", "/o/test/a%2b1%2F%c3%A9", b"v")?;
    ensure!(status == 200, "{status} {body}");
    let listing = node.get(&node.upload, "/o/test/")?;
    ensure!(
        listing.text().contains(r#""key":"a+1/é""#),
        "{}",
        listing.text()
    );
    Ok(())
}
