//! Node-wide budgets and per-user quotas, driven over real HTTP against a
//! real node: object bodies cross in bounded parts both ways (the node's
//! peak RSS stays far below the object's size), a request past the node's
//! HTTP buffers is refused before its body is read, a client that stops
//! reading its answer is cut off, and users are held to their quotas of
//! calls in flight and object bytes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_tests::{Node, NodeOptions};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A node started with `config` (TOML) and the test functions.
fn node_with(config: &str) -> Result<(Node, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, config)?;
    let node = Node::start(NodeOptions {
        functions: true,
        extra: vec!["--config".into(), path.display().to_string()],
        ..Default::default()
    })?;
    Ok((node, dir))
}

/// The node's peak resident set so far (`VmHWM`), in bytes.
fn peak_rss_bytes(node: &Node) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid()))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kib << 10)
}

/// Waits (up to 60 s) until the node's HTTP buffer bytes held meet `done`.
fn wait_held(node: &Node, done: impl Fn(f64) -> bool) -> Result<()> {
    node.wait_for(Duration::from_secs(60), |node| {
        Ok(done(node.metric("ferry_http_buffer_bytes")?))
    })
}

/// Deterministic bytes for part `i` of a test object.
fn part(i: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|j| ((i * 1_000_003 + j).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Sends request headers, then the body in `parts`, on a raw connection,
/// and reads the status line and body of the answer.
fn raw_request(
    addr: &str,
    head: &str,
    parts: impl Iterator<Item = Vec<u8>>,
) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.write_all(head.as_bytes())?;
    for part in parts {
        stream.write_all(&part)?;
    }
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> Result<(u16, String)> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= length || n == 0 {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .context("status code")?
                    .parse()?;
                return Ok((status, body.to_owned()));
            }
        }
        if n == 0 {
            bail!("connection closed before an answer: {text}");
        }
    }
}

/// A 256 MiB object PUT and GET over HTTP. Before, the node read the whole
/// body into memory before writing it, and built the whole object in
/// memory to answer a GET: its peak RSS rose by the object's size, twice.
/// Now each crosses in 4 MiB parts: the object arrives whole and the
/// node's peak RSS rises by a small fraction of it.
#[test]
fn a_large_object_crosses_http_in_bounded_parts_both_ways() -> Result<()> {
    let node = Node::with_functions()?;
    // Warm every path (a small put and get) before the baseline.
    assert_eq!(
        node.put(&node.upload, "/o/u/warm", &part(0, 1 << 20))?
            .status,
        200
    );
    assert_eq!(node.get(&node.upload, "/o/u/warm")?.status, 200);
    let before = peak_rss_bytes(&node)?;

    const PART_BYTES: usize = 8 << 20;
    const PARTS: u64 = 32; // 256 MiB
    let total = PART_BYTES as u64 * PARTS;
    let mut sent = Sha256::new();
    let (status, body) = raw_request(
        &node.upload,
        &format!(
            "PUT /o/u/big HTTP/1.1\r\nHost: ferry\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
        ),
        (0..PARTS).map(|i| {
            let bytes = part(i, PART_BYTES);
            sent.update(&bytes);
            bytes
        }),
    )?;
    assert_eq!(status, 200, "{body}");
    let after_put = peak_rss_bytes(&node)?;

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut reply = agent
        .get(format!("http://{}/o/u/big", node.upload))
        .call()?;
    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(
        reply
            .headers()
            .get("content-length")
            .map(|v| v.to_str().ok()),
        Some(Some(total.to_string().as_str()))
    );
    let mut reader = reply.body_mut().as_reader();
    let mut got = Sha256::new();
    let mut got_bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.update(&buf[..n]);
        got_bytes += n as u64;
    }
    assert_eq!(got_bytes, total);
    assert!(
        got.finalize() == sent.finalize(),
        "the object read back is the one sent"
    );
    let after_get = peak_rss_bytes(&node)?;

    eprintln!(
        "peak RSS: {} MiB before, {} MiB after a 256 MiB PUT, {} MiB after its GET",
        before >> 20,
        after_put >> 20,
        after_get >> 20
    );
    let bound = 64 << 20;
    assert!(
        after_put - before < bound && after_get - before < bound,
        "peak RSS rose by {} MiB (PUT) and {} MiB (GET) for a 256 MiB object",
        (after_put - before) >> 20,
        (after_get - before) >> 20
    );
    node.assert_serving()
}

/// A body sent without `Content-Length` is gathered only up to one part:
/// a larger one is told to say its length (411), a small one is stored.
/// The client still sending the refused body reads the 411: the node
/// drains what comes after its answer instead of resetting the connection,
/// which failed the client's next write with "broken pipe".
#[test]
fn a_chunked_object_body_is_bounded() -> Result<()> {
    let node = Node::with_functions()?;
    let chunked = |len: usize| -> Result<(u16, String)> {
        let data = part(7, len);
        let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
        framed.extend_from_slice(&data);
        framed.extend_from_slice(b"\r\n");
        raw_request(
            &node.upload,
            "PUT /o/u/chunked HTTP/1.1\r\nHost: ferry\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            // The end of the body comes once the node has had time to
            // answer a refusal and close.
            std::iter::once(framed).chain(std::iter::once_with(|| {
                std::thread::sleep(Duration::from_millis(500));
                b"0\r\n\r\n".to_vec()
            })),
        )
    };
    let (status, body) = chunked(1000)?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(node.get(&node.upload, "/o/u/chunked")?.body, part(7, 1000));
    let (status, body) = chunked(5 << 20)?;
    assert_eq!(status, 411, "{body}");
    assert!(body.contains("Content-Length"), "{body}");
    assert_eq!(
        node.get(&node.upload, "/o/u/chunked")?.body,
        part(7, 1000),
        "the refused put left the object as it was"
    );
    Ok(())
}

/// With the node's HTTP buffers taken by a request whose body is still
/// coming, the next request that needs more than what is left is refused
/// with 503, a reason and Retry-After at once, before its body is sent;
/// when the first ends, the buffers are back.
#[test]
fn a_request_past_the_http_buffers_is_refused_before_its_body_is_read() -> Result<()> {
    let (node, _dir) = node_with("[limits]\nhttp_buffer_bytes_max = 24000000\n")?;
    // Holds 20 MB of the 24 MB: its headers promise a body it never sends.
    let mut holder = TcpStream::connect(&node.http)?;
    holder.write_all(
        b"POST / HTTP/1.1\r\nHost: ferry\r\nContent-Length: 20000000\r\n\r\n{\"user\":",
    )?;
    wait_held(&node, |held| held >= 20e6)?;

    let started = Instant::now();
    let mut refused = TcpStream::connect(&node.http)?;
    refused.set_read_timeout(Some(Duration::from_secs(30)))?;
    refused.write_all(
        b"POST / HTTP/1.1\r\nHost: ferry\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n",
    )?;
    let (status, body) = read_answer(&mut refused)?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("http_buffer_bytes_max"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered without waiting for the body (or its stall timeout)"
    );
    // A small call fits what is left.
    let ok = node.call("test", "echo", "fits")?;
    assert_eq!((ok.status, ok.text()), (200, "fits".to_owned()));

    drop(holder);
    wait_held(&node, |held| held == 0.0)?;
    let (status, body) = raw_request(
        &node.http,
        "POST / HTTP/1.1\r\nHost: ferry\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n",
        std::iter::once({
            let mut message = br#"{"user":"test","function":"noop","input_data":""#.to_vec();
            message.resize(10_000_000 - 2, b'x');
            message.extend_from_slice(b"\"}");
            message
        }),
    )?;
    assert_eq!(status, 200, "{body}");
    node.assert_serving()
}

/// A client that asks for a large object and never reads the answer is
/// cut off after `response_write_ms_max`, and the part buffer its answer
/// held goes back to the node.
#[test]
fn a_client_that_stops_reading_its_answer_is_cut_off() -> Result<()> {
    let (node, _dir) = node_with("[limits]\nresponse_write_ms_max = 1000\n")?;
    assert_eq!(
        node.put(&node.upload, "/o/u/big", &part(3, 48 << 20))?
            .status,
        200
    );
    let mut stalled = TcpStream::connect(&node.upload)?;
    // A small receive window so the socket fills at once.
    stalled.write_all(b"GET /o/u/big HTTP/1.1\r\nHost: ferry\r\n\r\n")?;
    wait_held(&node, |held| held > 0.0)?;
    // Cut off: the node gives the part back once its write times out.
    wait_held(&node, |held| held == 0.0)?;
    // The connection is closed: draining it ends (EOF or reset) well
    // short of the object.
    stalled.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut drained = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match stalled.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    assert!(
        drained < 48 << 20,
        "drained {drained} bytes of a cut-off answer"
    );
    node.assert_serving()
}

/// `[quotas] calls_in_flight_max`: a user with a call running cannot start
/// another past their quota (503 with the reason); another user can, and
/// the first can again once their call ends.
#[test]
fn a_user_is_held_to_their_calls_in_flight() -> Result<()> {
    let (node, _dir) = node_with("[quotas]\ncalls_in_flight_max = 1\n")?;
    let started = node.invoke(json!({
        "user": "test", "function": "loop", "async": true, "timeout_ms": 3000
    }))?;
    assert_eq!(started.status, 200, "{}", started.text());
    let id: u64 = started.text().trim().parse()?;
    let second = node.call("test", "echo", "x")?;
    assert_eq!(second.status, 503, "{}", second.text());
    assert!(
        second
            .text()
            .contains("user test has 1 calls in flight, the quota is 1"),
        "{}",
        second.text()
    );
    assert_eq!(second.header("retry-after"), Some("1"));
    assert!(
        node.metric("ferry_calls_total{function=\"echo\",outcome=\"quota\",user=\"test\"}")? >= 1.0
    );
    // The loop ends at its deadline; then the user may call again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = node.invoke(json!({"status": true, "id": id}))?;
        if status.text() != "RUNNING" {
            break;
        }
        if Instant::now() > deadline {
            bail!("the looping call did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = node.call("test", "echo", "x")?;
    assert_eq!((again.status, again.text()), (200, "x".to_owned()));
    Ok(())
}

/// `[quotas] object_bytes_max` (and a per-user entry that replaces it):
/// puts past the quota are refused with 413 and the reason, whether they
/// come over HTTP or from a guest's `__faasmndp_put`; replacing an object
/// counts what it held as given back; a delete makes room.
#[test]
fn a_user_is_held_to_their_object_bytes() -> Result<()> {
    let (node, _dir) = node_with(
        "[quotas]\nobject_bytes_max = 1000000\n[quotas.users.test]\nobject_bytes_max = 4\n",
    )?;
    let put =
        |key: &str, len: usize| node.put(&node.upload, &format!("/o/u/{key}"), &vec![b'q'; len]);
    assert_eq!(put("a", 600_000)?.status, 200);
    let over = put("b", 600_000)?;
    assert_eq!(over.status, 413, "{}", over.text());
    assert!(
        over.text().contains("user u holds 600000 bytes of objects; 600000 more would pass the quota of 1000000 bytes"),
        "{}",
        over.text()
    );
    assert_eq!(
        node.get(&node.upload, "/o/u/b")?.status,
        404,
        "nothing was stored"
    );
    assert_eq!(
        put("a", 900_000)?.status,
        200,
        "a replacement counts the old bytes back"
    );
    assert_eq!(put("c", 100_000)?.status, 200);
    assert_eq!(put("d", 1)?.status, 413);
    assert_eq!(node.delete(&node.upload, "/o/u/a")?.status, 200);
    assert_eq!(put("d", 500_000)?.status, 200, "the delete made room");

    // User `test` has a quota of 4 bytes: the `objects` function's put of
    // "hello" (5 bytes) fails inside the guest, with the reason in the log.
    let call = node.call("test", "objects", "")?;
    assert_eq!(call.status, 500, "{}", call.text());
    assert!(call.text().contains("put failed"), "{}", call.text());
    assert_eq!(node.get(&node.upload, "/o/test/a")?.status, 404);
    node.assert_serving()
}

/// Finished asynchronous calls are kept within a byte cap (128 MiB), not
/// only a count: ten 16 MiB results do not all stay; the oldest answer
/// that they are no longer kept, and the newest still give their output.
/// Before, eight 32 MiB results held 256 MiB for ten minutes.
#[test]
fn async_results_are_kept_within_their_byte_cap() -> Result<()> {
    use base64::Engine as _;
    let node = Node::with_functions()?;
    let input = part(11, 16 << 20);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&input);
    let mut ids = Vec::new();
    for _ in 0..10 {
        let started = node.invoke(json!({
            "user": "test", "function": "echo", "input_base64": encoded, "async": true
        }))?;
        assert_eq!(started.status, 200, "{}", started.text());
        ids.push(started.text().trim().parse::<u64>()?);
        // One at a time, so they finish in order.
        node.wait_for(Duration::from_secs(60), |node| {
            Ok(node
                .invoke(json!({"status": true, "id": ids[ids.len() - 1]}))?
                .text()
                != "RUNNING")
        })?;
    }
    let polls: Vec<ferry_tests::Reply> = ids
        .iter()
        .map(|id| node.invoke(json!({"status": true, "id": id})))
        .collect::<Result<_>>()?;
    let kept = polls
        .iter()
        .filter(|p| p.status == 200 && p.body.len() == "SUCCESS: ".len() + input.len())
        .count();
    assert!((1..=8).contains(&kept), "{kept} of ten 16 MiB results kept");
    let newest = &polls[9];
    assert!(
        newest.status == 200 && newest.body[9..] == input[..],
        "the newest is kept whole"
    );
    let oldest = &polls[0];
    assert_eq!(oldest.status, 500);
    assert!(
        oldest.text().contains("no longer kept"),
        "{}",
        &oldest.text()[..200.min(oldest.text().len())]
    );
    Ok(())
}
