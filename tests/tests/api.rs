//! The HTTP API beyond single calls: async calls and polling, uploads,
//! objects with ranges, state, health and metrics.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ferry_tests::Node;
use serde_json::json;

#[test]
fn async_calls_are_polled_until_done_and_stay_readable() -> Result<()> {
    let node = Node::with_functions()?;
    let reply = node.invoke(
        json!({"user": "test", "function": "echo", "input_data": "later", "async": true}),
    )?;
    assert_eq!(reply.status, 200);
    let id: u64 = reply.text().parse()?;
    let started = Instant::now();
    let done = loop {
        let status = node.invoke(json!({"status": true, "id": id}))?;
        match status.text().as_str() {
            "RUNNING" => {}
            _ => break status,
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("call {id} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!((done.status, done.text().as_str()), (200, "SUCCESS: later"));
    // A second poll sees the same result.
    assert_eq!(
        node.invoke(json!({"status": true, "id": id}))?.text(),
        "SUCCESS: later"
    );

    let reply = node.invoke(json!({"user": "test", "function": "retcode", "async": true}))?;
    let id: u64 = reply.text().parse()?;
    let started = Instant::now();
    loop {
        let status = node.invoke(json!({"status": true, "id": id}))?;
        if status.text() != "RUNNING" {
            assert_eq!(
                (status.status, status.text().as_str()),
                (500, "FAILED: three")
            );
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("call {id} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[test]
fn uploads_ping_and_download() -> Result<()> {
    let node = Node::with_functions()?;
    assert_eq!(node.get(&node.upload, "/ping")?.text(), "PONG");
    let wasm = std::fs::read(ferry_tests::guests()?.join("tests/test/echo.wasm"))?;
    let reply = node.upload_wasm("demo", "echo2", &wasm)?;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "Function upload complete")
    );
    assert_eq!(node.call("demo", "echo2", "hi")?.text(), "hi");
    let download = node.get(&node.upload, "/f/demo/echo2")?;
    assert_eq!(download.status, 200);
    assert_eq!(download.body, wasm, "GET /f returns the wasm as uploaded");
    assert_eq!(node.get(&node.upload, "/f/demo/none")?.status, 404);
    Ok(())
}

#[test]
fn objects_state_health_metrics() -> Result<()> {
    let node = Node::with_functions()?;
    let up = &node.upload;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(node.put(up, "/o/alice/dir/data.bin", &data)?.status, 200);
    assert_eq!(node.get(up, "/o/alice/dir/data.bin")?.body, data);
    let part = node.get_with(up, "/o/alice/dir/data.bin", ("Range", "bytes=100-199"))?;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, data[100..200]);
    assert_eq!(part.header("content-range"), Some("bytes 100-199/10000"));
    let tail = node.get_with(up, "/o/alice/dir/data.bin", ("Range", "bytes=-10"))?;
    assert_eq!(tail.body, data[9990..]);
    let past = node.get_with(up, "/o/alice/dir/data.bin", ("Range", "bytes=10000-"))?;
    assert_eq!(past.status, 416);
    assert_eq!(
        node.put(up, "/o/alice/caf%C3%A9", b"unicode key")?.status,
        200
    );
    let list = node.get(up, "/o/alice/")?;
    let list: serde_json::Value = serde_json::from_slice(&list.body)?;
    assert_eq!(
        list,
        json!([{"key": "caf\u{e9}", "size": 11}, {"key": "dir/data.bin", "size": 10000}])
    );
    assert_eq!(node.delete(up, "/o/alice/dir/data.bin")?.status, 200);
    assert_eq!(node.get(up, "/o/alice/dir/data.bin")?.status, 404);
    assert_eq!(node.delete(up, "/o/alice/dir/data.bin")?.status, 404);
    // An object written over HTTP is what a function's getMmap reads.
    assert_eq!(node.put(up, "/o/ndp/http-key", b"from http")?.status, 200);
    assert_eq!(node.call("ndp", "get", "http-key")?.text(), "from http");
    assert_eq!(
        node.call("ndp", "wordcount", "http-key")?.text(),
        "from\t1\nhttp\t1\n"
    );

    // State.
    assert_eq!(node.put(up, "/s/alice/counter", b"41")?.status, 200);
    assert_eq!(node.get(up, "/s/alice/counter")?.text(), "41");

    // Health and metrics.
    assert_eq!(node.get(&node.http, "/healthz")?.text(), "OK");
    node.call("test", "echo", "x")?;
    let metrics = node.get(&node.http, "/metrics")?.text();
    assert!(
        metrics.contains(r#"ferry_calls_total{function="echo",outcome="ok",user="test"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_call_duration_seconds_bucket"));
    // A node alone holds every object: the funclet of `wordcount` above ran
    // in place, and nothing was offered anywhere.
    assert!(node.metric(r#"ferry_funclets_here_total{reason="holds_object"}"#)? >= 1.0);
    assert_eq!(
        node.metric(r#"ferry_offloads_total{result="accepted"}"#)?,
        0.0
    );
    assert!(metrics.contains(r#"ferry_offloads_total{result="declined"} 0"#));
    Ok(())
}
