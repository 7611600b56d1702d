//! Node-level behaviour: persistence across restarts, admission limits,
//! and the `ferry` CLI.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use ferry_tests::{ferry_bin, Node, NodeOptions};
use serde_json::json;

#[test]
fn functions_and_objects_survive_a_restart() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("data");
    let node = Node::start(NodeOptions {
        data: Some(data.clone()),
        ..Default::default()
    })?;
    let wasm = std::fs::read(ferry_tests::guests()?.join("examples/ndp/get.wasm"))?;
    assert_eq!(node.upload_wasm("keep", "get", &wasm)?.status, 200);
    assert_eq!(node.put(&node.upload, "/o/keep/k", b"durable")?.status, 200);
    node.kill()?;
    let node = Node::start(NodeOptions {
        data: Some(data),
        ..Default::default()
    })?;
    let reply = node.call("keep", "get", "k")?;
    assert_eq!((reply.status, reply.text().as_str()), (200, "durable"));
    Ok(())
}

#[test]
fn a_relative_data_directory_works() -> Result<()> {
    // As the quick start runs it: `ferry up --data ./data` in a checkout.
    let scratch = tempfile::tempdir()?;
    let node = Node::start(NodeOptions {
        functions: true,
        data: Some("./data".into()),
        cwd: Some(scratch.path().to_path_buf()),
        ..Default::default()
    })?;
    assert_eq!(node.call("ndp", "put", "key v1 v2 v3")?.text(), "OK");
    assert_eq!(
        node.call("ndp", "wordcount", "key")?.text(),
        "v1\t1\nv2\t1\nv3\t1\n"
    );
    assert_eq!(node.put(&node.upload, "/o/ndp/k2", b"xyz")?.status, 200);
    assert!(scratch.path().join("data/objects").is_dir());
    Ok(())
}

#[test]
fn a_full_shard_answers_503_with_retry_after() -> Result<()> {
    let node = Node::start(NodeOptions {
        functions: true,
        extra: vec!["--calls-in-flight-max".into(), "1".into()],
        ..Default::default()
    })?;
    // Occupy the only slot with a call that spins until its deadline.
    let reply = node
        .invoke(json!({"user": "test", "function": "loop", "async": true, "timeout_ms": 3000}))?;
    assert_eq!(reply.status, 200);
    std::thread::sleep(Duration::from_millis(100));
    let busy = node.call("test", "echo", "x")?;
    assert_eq!((busy.status, busy.text().as_str()), (503, "Busy"));
    assert_eq!(busy.header("retry-after"), Some("1"));
    // Once the slot frees, calls go through again.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(node.call("test", "echo", "x")?.text(), "x");
    Ok(())
}

#[test]
fn the_cli_uploads_invokes_and_moves_objects() -> Result<()> {
    let node = Node::start(NodeOptions::default())?;
    let port = |addr: &str| addr.rsplit(':').next().unwrap_or_default().to_owned();
    let target = [
        "--host".to_owned(),
        "127.0.0.1".to_owned(),
        "--http-port".to_owned(),
        port(&node.http),
        "--upload-port".to_owned(),
        port(&node.upload),
    ];
    let ferry = |args: &[&str]| -> Result<std::process::Output> {
        Ok(Command::new(ferry_bin())
            .args(args)
            .args(&target)
            .output()?)
    };
    let guests = ferry_tests::guests()?;
    let put = guests.join("examples/ndp/put.wasm");
    let wordcount = guests.join("examples/ndp/wordcount.wasm");
    let out = ferry(&["upload", "cli", "put", &put.to_string_lossy()])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ferry(&["upload", "cli", "wordcount", &wordcount.to_string_lossy()])?
            .status
            .success()
    );
    let out = ferry(&["invoke", "cli", "put", "--input", "doc a b a"])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK");
    let out = ferry(&[
        "invoke",
        "cli",
        "wordcount",
        "--input",
        "doc",
        "--forbid-ndp",
    ])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\t2\nb\t1\n");
    let out = ferry(&["object", "get", "cli", "doc"])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a b a");
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), b"from a file")?;
    assert!(ferry(&[
        "object",
        "put",
        "cli",
        "f/1",
        &file.path().to_string_lossy()
    ])?
    .status
    .success());
    let out = ferry(&["object", "ls", "cli"])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""key":"f/1""#));
    let out = ferry(&["invoke", "cli", "missing"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No function cli/missing"));
    Ok(())
}
