//! Bad input gets a clear error, loses nothing, and the node keeps serving.

use anyhow::Result;
use ferry_tests::{Node, NodeOptions};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn bad_requests_get_clear_errors_and_the_node_keeps_serving() -> Result<()> {
    let node = Node::start(NodeOptions {
        functions: true,
        extra: vec![
            "--call-ms-max".into(),
            "3000".into(),
            "--memory-bytes-max".into(),
            (256u64 << 20).to_string(),
            "--input-bytes-max".into(),
            (1u64 << 20).to_string(),
            "--header-read-ms-max".into(),
            "1000".into(),
        ],
        ..Default::default()
    })?;
    // (what, raw body, expected status, expected body or prefix)
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty body", b"".to_vec(), 400, "Empty request"),
        ("whitespace body", b"  \n".to_vec(), 400, "Empty request"),
        (
            "not JSON",
            b"{\"user\": ".to_vec(),
            400,
            "Invalid JSON message: ",
        ),
        (
            "JSON array",
            b"[1,2]".to_vec(),
            400,
            "Invalid JSON message: ",
        ),
        (
            "async not a bool",
            br#"{"user":"test","function":"echo","async":"yes"}"#.to_vec(),
            400,
            "Invalid JSON message: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "user not a string",
            br#"{"user":5,"function":"echo"}"#.to_vec(),
            400,
            "Invalid JSON message: invalid type: integer `5`",
        ),
        (
            "missing user",
            br#"{"function":"echo"}"#.to_vec(),
            400,
            "Empty user",
        ),
        (
            "missing function",
            br#"{"user":"test"}"#.to_vec(),
            400,
            "Empty function",
        ),
        (
            "unknown function",
            br#"{"user":"test","function":"nope"}"#.to_vec(),
            404,
            "No function test/nope",
        ),
        (
            "bad base64",
            br#"{"user":"test","function":"echo","input_base64":"!!"}"#.to_vec(),
            400,
            "input_base64 is not base64",
        ),
        (
            "status of unknown id",
            br#"{"status":true,"id":12345}"#.to_vec(),
            404,
            "No call 12345",
        ),
    ];
    for (what, body, status, expected) in cases {
        let reply = node.post_raw(&body)?;
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        assert!(
            reply.text().starts_with(expected),
            "{what}: got {:?}, expected {expected:?}",
            reply.text()
        );
    }

    // Guests that misbehave: (function, input, reason fragment).
    let guests = [
        (
            "oob_output",
            "",
            "env::__faasm_write_output: guest range [0x7fffff00, +4096) is outside linear memory",
        ),
        (
            "oob_input",
            "x",
            "env::__faasm_read_input: guest range [0xfffff000, +100) is outside linear memory",
        ),
        (
            "trap",
            "",
            "wasm trap: wasm `unreachable` instruction executed",
        ),
        ("loop", "", "deadline exceeded"),
        ("memhog", "", "memory cap exceeded"),
        ("unimpl", "", "env::socket"),
    ];
    for (function, input, reason) in guests {
        let reply = node.call("test", function, input)?;
        let text = reply.text();
        assert_eq!(reply.status, 500, "{function}: {text}");
        assert!(
            text.starts_with("Call failed (return value=1)\n"),
            "{function}: {text}"
        );
        assert!(
            text.contains(reason),
            "{function}: {text:?} lacks {reason:?}"
        );
    }

    // A looping guest is still stopped at its deadline after the node sat
    // idle: the epoch ticker, parked while no call's store is alive, is
    // woken by the call's store. First, the idle node stops ticking.
    let ticks = "ferry_epoch_ticks_total";
    let mut last = node.metric(ticks)?;
    node.wait_for(Duration::from_secs(10), |node| {
        std::thread::sleep(Duration::from_millis(300));
        let now = node.metric(ticks)?;
        let parked = now == last;
        last = now;
        Ok(parked)
    })?;
    let started = Instant::now();
    let reply = node.call("test", "loop", "")?;
    assert!(
        reply.status == 500 && reply.text().contains("deadline exceeded"),
        "loop after idle: {} {}",
        reply.status,
        reply.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the 3 s deadline took {:?}",
        started.elapsed()
    );
    assert!(
        node.metric(ticks)? >= last + 1000.0,
        "the call ran without ticks"
    );

    // Input over the cap.
    let big = "x".repeat((1 << 20) + 1);
    let reply = node.invoke(json!({"user": "test", "function": "echo", "input_data": big}))?;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(reply.text().contains("exceeds the cap"));

    // Uploads that are not wasm, or not valid wasm.
    for (what, bytes) in [
        ("text", b"hello".to_vec()),
        ("truncated wasm", b"\0asm\x01\0\0\0\x01".to_vec()),
    ] {
        let reply = node.upload_wasm("test", "broken", &bytes)?;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert!(
            reply.text().starts_with("Invalid function test/broken: "),
            "{what}: {}",
            reply.text()
        );
    }
    let reply = node.call("test", "broken", "")?;
    assert_eq!(reply.status, 404, "a refused upload registers nothing");

    // User isolation: user b cannot read user a's object.
    assert_eq!(node.call("ndp", "put", "secret a-only")?.text(), "OK");
    let reply = node.put(&node.upload, "/o/other/secret", b"b's own")?;
    assert_eq!(reply.status, 200);
    let reply = node.get(&node.upload, "/o/ndp/secret")?;
    assert_eq!(reply.text(), "a-only");
    let reply = node.get(&node.upload, "/o/nobody/secret")?;
    assert_eq!(reply.status, 404);
    // and through a function of another user
    assert_eq!(
        node.upload_wasm(
            "b",
            "get",
            &std::fs::read(ferry_tests::guests()?.join("examples/ndp/get.wasm"))?
        )?
        .status,
        200
    );
    let reply = node.call("b", "get", "secret")?;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (500, "No object secret")
    );

    // Malformed HTTP on both ports: the connection gets a 400 (or is
    // closed), the node goes on.
    for addr in [&node.http, &node.upload] {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        stream.write_all(b"NOT HTTP AT ALL\r\n\x00\x01\r\n\r\n")?;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
    }

    // A client that stalls mid-headers is cut off, not kept forever.
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&node.http)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
        stream.write_all(b"POST /f/ HTTP/1.1\r\nHost: x\r\n")?;
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let waited = started.elapsed();
        assert!(
            waited < std::time::Duration::from_secs(10),
            "stalled client kept for {waited:?}"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }

    node.assert_serving()?;
    Ok(())
}
