//! Node-level behaviour: persistence across restarts, admission limits,
//! and the `ferry` CLI.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
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
    node.wait_for(Duration::from_secs(60), |n| {
        Ok(n.metric("ferry_calls_in_flight")? == 1.0)
    })?;
    let busy = node.call("test", "echo", "x")?;
    assert_eq!((busy.status, busy.text().as_str()), (503, "Busy"));
    assert_eq!(busy.header("retry-after"), Some("1"));
    // Once the slot frees (the loop reaches its deadline), calls go
    // through again.
    node.wait_for(Duration::from_secs(60), |n| {
        Ok(n.metric("ferry_calls_in_flight")? == 0.0)
    })?;
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
    let out = ferry(&["object", "ls", "cli", "--json"])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""key":"f/1""#));
    let out = ferry(&["invoke", "cli", "missing"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No function cli/missing"));
    Ok(())
}

/// The `ferry` CLI aimed at `node`.
fn cli(node: &Node, args: &[&str]) -> Result<std::process::Output> {
    let port = |addr: &str| addr.rsplit(':').next().unwrap_or_default().to_owned();
    let out = Command::new(ferry_bin())
        .args(args)
        .args(["--host", "127.0.0.1", "--http-port"])
        .arg(port(&node.http))
        .arg("--upload-port")
        .arg(port(&node.upload))
        .output()?;
    ensure!(
        out.status.success(),
        "ferry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

#[test]
fn object_ls_prints_a_table_for_people_and_json_for_scripts() -> Result<()> {
    let node = Node::start(NodeOptions::default())?;
    assert_eq!(node.put(&node.upload, "/o/ls/b", b"xyz")?.status, 200);
    let long = vec![b'.'; 12_345];
    assert_eq!(
        node.put(&node.upload, "/o/ls/dir/a-longer-key", &long)?
            .status,
        200
    );

    let table = String::from_utf8(cli(&node, &["object", "ls", "ls"])?.stdout)?;
    assert_eq!(
        table,
        "KEY                SIZE\n\
         b                     3\n\
         dir/a-longer-key  12345\n"
    );

    let json = String::from_utf8(cli(&node, &["object", "ls", "ls", "--json"])?.stdout)?;
    let (document, rest) = json.split_once('\n').context("no newline after the JSON")?;
    ensure!(rest.is_empty(), "more after the JSON document: {rest:?}");
    let listed: serde_json::Value = serde_json::from_str(document)?;
    assert_eq!(
        listed,
        json!([{"key": "b", "size": 3}, {"key": "dir/a-longer-key", "size": 12_345}])
    );

    // A user without objects: the header alone, and an empty array.
    let empty = cli(&node, &["object", "ls", "nobody"])?.stdout;
    assert_eq!(String::from_utf8(empty)?, "KEY  SIZE\n");
    let empty = cli(&node, &["object", "ls", "nobody", "--json"])?.stdout;
    assert_eq!(String::from_utf8(empty)?, "[]\n");
    Ok(())
}

#[test]
fn a_log_written_to_a_file_carries_no_colour_codes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (ready, log) = (dir.path().join("ready"), dir.path().join("stderr"));
    let mut node = Command::new(ferry_bin())
        .args([
            "up",
            "--http-port",
            "0",
            "--upload-port",
            "0",
            "--cores",
            "1",
        ])
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--ready-file")
        .arg(&ready)
        .env("FERRY_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting ferry up")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let started = loop {
        if ready.exists() {
            break Ok(());
        }
        if let Some(status) = node.try_wait()? {
            break Err(anyhow::anyhow!("ferry exited during start-up: {status}"));
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("ferry did not become ready within 120 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = node.kill();
    node.wait()?;
    started?;
    let text = std::fs::read_to_string(&log)?;
    ensure!(text.contains("INFO"), "no INFO line in the log: {text}");
    ensure!(
        !text.contains('\x1b'),
        "colour codes in a log written to a file: {text:?}"
    );
    Ok(())
}
