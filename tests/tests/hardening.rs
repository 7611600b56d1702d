//! What a hostile or unlucky client found, each driven over real HTTP
//! against a real node: racing writers, deleters and readers of one key,
//! and a guest that never stops computing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ferry_tests::Node;
use serde_json::json;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Nine clients PUT, DELETE, GET and list two keys (and functions read
/// them through getMmap) until the readers have made 300 reads. Before: glommio's open
/// panicked when a delete landed mid-open, killing the node; a GET could
/// give the 1,000-byte version's length with the 200,000-byte version's
/// bytes. Now: the node serves on and every answer is one whole version.
#[test]
fn racing_puts_deletes_and_reads_of_one_key_keep_the_node_up_and_reads_whole() -> Result<()> {
    let node = Arc::new(Node::with_functions()?);
    let small = vec![b'a'; 1000];
    let large = vec![b'b'; 200_000];
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..9usize {
        let (node, stop, reads) = (node.clone(), stop.clone(), reads.clone());
        let (small, large) = (small.clone(), large.clone());
        clients.push(std::thread::spawn(move || -> Result<()> {
            let agent = agent();
            let object = |key: usize| format!("http://{}/o/ndp/k{key}", node.upload);
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let key = round % 2;
                match client {
                    0 | 1 => {
                        let body = if round % 2 == 0 { &small } else { &large };
                        let status = agent.put(object(key)).send(&body[..])?.status().as_u16();
                        if status != 200 {
                            bail!("PUT answered {status}");
                        }
                    }
                    2 => {
                        let status = agent.delete(object(key)).call()?.status().as_u16();
                        if status != 200 && status != 404 {
                            bail!("DELETE answered {status}");
                        }
                    }
                    3 => {
                        let url = format!("http://{}/o/ndp/", node.upload);
                        let status = agent.get(url).call()?.status().as_u16();
                        if status != 200 {
                            bail!("listing answered {status}");
                        }
                    }
                    4..=6 => {
                        let mut reply = agent.get(object(key)).call()?;
                        let status = reply.status().as_u16();
                        let body = reply.body_mut().with_config().limit(1 << 20).read_to_vec()?;
                        match status {
                            200 if body == small || body == large => {}
                            404 => {}
                            _ => bail!(
                                "GET answered {status} with {} bytes starting {:?}",
                                body.len(),
                                &body[..body.len().min(8)]
                            ),
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        // A function reading the same key through getMmap.
                        let message = json!({"user": "ndp", "function": "get", "input_data": format!("k{key}")});
                        let mut reply = agent
                            .post(format!("http://{}/f/", node.http))
                            .send(message.to_string())?;
                        let status = reply.status().as_u16();
                        let body = reply.body_mut().with_config().limit(1 << 20).read_to_vec()?;
                        let missing = format!("No object k{key}").into_bytes();
                        match status {
                            200 if body == small || body == large => {}
                            500 if body == missing => {}
                            _ => bail!("get answered {status} with {} bytes", body.len()),
                        }
                    }
                }
            }
            Ok(())
        }));
    }
    // Until enough reads have raced the writers to mean something, or a
    // client has stopped (its error is reported below).
    let deadline = Instant::now() + Duration::from_secs(300);
    while reads.load(Ordering::Relaxed) < 300 && !clients.iter().any(|c| c.is_finished()) {
        if Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
            bail!("{} reads in 300 s", reads.load(Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client
            .join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
    }
    assert!(
        reads.load(Ordering::Relaxed) >= 300,
        "too few reads to mean anything"
    );
    assert_eq!(node.metric("ferry_request_panics_total")?, 0.0);
    node.assert_serving()
}

/// A guest that loops on the node's only shard. Before: the shard
/// collected I/O completions on glommio's 100 ms preemption timer, so a
/// no-op call took 100+ ms and a 1-byte PUT up to 2.8 s. Now the timer is
/// 2 ms and guests yield every 5 ms epoch tick.
#[test]
fn a_looping_guest_delays_its_neighbours_by_milliseconds() -> Result<()> {
    let node = Node::with_functions()?;
    assert_eq!(node.call("test", "noop", "")?.status, 200);
    let id = node
        .invoke(json!({"user": "test", "function": "loop", "async": true, "timeout_ms": 20_000}))?
        .text();
    assert!(id.parse::<u64>().is_ok(), "{id}");
    node.wait_for(Duration::from_secs(60), |n| {
        Ok(n.metric("ferry_calls_in_flight")? == 1.0)
    })?;
    let mut noops = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        assert_eq!(node.call("test", "noop", "")?.status, 200);
        noops.push(started.elapsed());
    }
    let mut puts = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        assert_eq!(
            node.put(&node.upload, &format!("/o/test/p{i}"), b"x")?
                .status,
            200
        );
        puts.push(started.elapsed());
    }
    noops.sort();
    puts.sort();
    let still_running = node
        .invoke(json!({"status": true, "id": id.parse::<u64>()?}))?
        .text();
    assert_eq!(still_running, "RUNNING", "the loop must run throughout");
    // Bounds a loaded 2-core machine keeps: the old behaviour took at
    // least 100 ms for every call, by construction, so one faster call
    // out of nine tells them apart; and PUTs of up to 2.8 s.
    assert!(
        noops[0] < Duration::from_millis(100),
        "fastest no-op call {:?} ({noops:?})",
        noops[0]
    );
    assert!(
        puts[2] < Duration::from_millis(1000),
        "median 1-byte PUT {:?} ({puts:?})",
        puts[2]
    );
    Ok(())
}

/// Two modules uploaded under one name at once, 16 rounds, then a node
/// killed in the middle of uploads. Before: the stored wasm (`GET /f/`)
/// and the function that ran could disagree, and a crash between the
/// three renames left a mixed set. Now what GET returns is what runs,
/// after every round and after every restart.
#[test]
fn uploads_are_atomic_under_races_and_crashes() -> Result<()> {
    let guests = ferry_tests::guests()?;
    let echo = std::fs::read(guests.join("tests/test/echo.wasm"))?;
    let hello = std::fs::read(guests.join("tests/test/hello.wasm"))?;
    // What each module answers to input "ping".
    let behaviour = |wasm: &[u8]| if wasm == &echo[..] { "ping" } else { "done" };
    let check = |node: &Node| -> Result<()> {
        let stored = node.get(&node.upload, "/f/test/race")?;
        assert_eq!(stored.status, 200);
        assert!(
            stored.body == echo || stored.body == hello,
            "GET /f/ returned neither module"
        );
        let ran = node.call("test", "race", "ping")?.text();
        assert_eq!(
            ran,
            behaviour(&stored.body),
            "the stored module is not the one that runs"
        );
        Ok(())
    };
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("data");
    let start = || {
        Node::start(ferry_tests::NodeOptions {
            data: Some(data.clone()),
            ..Default::default()
        })
    };
    let node = Arc::new(start()?);
    for _ in 0..16 {
        let uploads: Vec<_> = [echo.clone(), hello.clone()]
            .into_iter()
            .map(|wasm| {
                let node = node.clone();
                std::thread::spawn(move || {
                    node.upload_wasm("test", "race", &wasm).map(|r| r.status)
                })
            })
            .collect();
        for upload in uploads {
            let status = upload
                .join()
                .map_err(|_| anyhow::anyhow!("an upload panicked"))??;
            assert_eq!(status, 200);
        }
        check(&node)?;
    }
    // Crashes in the middle of a stream of uploads.
    let mut node = Arc::try_unwrap(node).map_err(|_| anyhow::anyhow!("node still shared"))?;
    for round in 0..4usize {
        let (upload, http) = (node.upload.clone(), node.http.clone());
        let (echo, hello) = (echo.clone(), hello.clone());
        let uploaded = Arc::new(AtomicUsize::new(0));
        let counted = uploaded.clone();
        let uploader = std::thread::spawn(move || {
            let agent = agent();
            for i in 0..50 {
                let wasm = if i % 2 == 0 { &echo } else { &hello };
                if agent
                    .put(format!("http://{upload}/f/test/race"))
                    .send(&wasm[..])
                    .is_err()
                {
                    break; // the node is gone
                }
                counted.fetch_add(1, Ordering::Release);
            }
            drop(http);
        });
        // Killed after a few uploads, a different number each round, while
        // the next is under way.
        let after = 1 + 3 * round;
        let deadline = Instant::now() + Duration::from_secs(120);
        while uploaded.load(Ordering::Acquire) < after && !uploader.is_finished() {
            if Instant::now() > deadline {
                bail!("{after} uploads not done in 120 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        node.kill()?;
        let _ = uploader.join();
        node = start()?;
        check(&node)?;
    }
    Ok(())
}

/// Byte caps where a call could smuggle memory past them. Before: a
/// chained call's input skipped the 16 MiB input cap (48 MiB went
/// through), and a 26 KB upload whose zygote filled 256 MiB stored a
/// 268 MB artifact. Now both are refused with a reason.
#[test]
fn chained_input_and_baked_zygotes_are_capped() -> Result<()> {
    let node = Node::with_functions()?;
    let within = node.call("test", "chainbig", "1")?;
    assert_eq!((within.status, within.text()), (200, "code=0".to_owned()));
    let past = node.call("test", "chainbig", "48")?;
    assert_eq!(past.status, 500, "{}", past.text());
    assert!(
        past.text().contains("exceeds the input cap"),
        "{}",
        past.text()
    );

    let huge = std::fs::read(ferry_tests::guests()?.join("invalid/zygote_huge.wasm"))?;
    assert!(huge.len() < 64 << 10, "the module itself is small");
    let upload = node.upload_wasm("test", "huge", &huge)?;
    assert_eq!(upload.status, 400, "{}", upload.text());
    assert!(
        upload.text().contains("pre-initialised memory"),
        "{}",
        upload.text()
    );
    assert_eq!(node.get(&node.upload, "/f/test/huge")?.status, 404);
    let stored: u64 = walk(&node.data)?;
    assert!(
        stored < 32 << 20,
        "{stored} bytes stored under the data directory"
    );
    node.assert_serving()
}

/// Bytes of every file under `dir`.
fn walk(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            walk(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// A node-wide budget on the linear memory of all calls at once. Before:
/// four memory-hungry calls took the node to 3.7 GiB. Now a call that
/// would grow the node's calls past the budget traps with the reason,
/// and the budget comes back when calls end.
#[test]
fn calls_together_stay_within_the_node_memory_budget() -> Result<()> {
    let node = Node::start(ferry_tests::NodeOptions {
        functions: true,
        extra: [
            "--memory-bytes-max",
            "268435456",
            "--node-memory-bytes-max",
            "314572800",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })?;
    // ~195 MiB held by a call that waits for object `gate`.
    let holder = node
        .invoke(json!({"user": "test", "function": "probe", "input_data": "gate 0 200000 0 1", "async": true}))?
        .text();
    let holder: u64 = holder.parse()?;
    // Until the holder has grown its memory the probe fits; ask until it
    // does not.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = node.call("test", "probe", "other 0 200000 0 0")?;
    while refused.status == 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        refused = node.call("test", "probe", "other 0 200000 0 0")?;
    }
    assert_eq!(refused.status, 500, "{}", refused.text());
    assert!(
        refused.text().contains("node memory budget exhausted"),
        "{}",
        refused.text()
    );
    // Let the holder finish; the budget is whole again.
    assert_eq!(node.put(&node.upload, "/o/test/gate", b"open")?.status, 200);
    node.wait_for(Duration::from_secs(60), |n| {
        Ok(!n
            .invoke(json!({"status": true, "id": holder}))?
            .text()
            .starts_with("RUNNING"))
    })?;
    let fits = node.call("test", "probe", "other 0 200000 0 0")?;
    assert_eq!(fits.status, 200, "{}", fits.text());
    assert!(fits.text().starts_with("ret=42"), "{}", fits.text());
    node.assert_serving()
}

/// `cmdline` had no cap (it becomes the guest's argv). Now past 64 KiB it
/// is refused with 413 and a reason, and the node serves on.
#[test]
fn an_oversized_cmdline_is_refused() -> Result<()> {
    let node = Node::with_functions()?;
    let ok = node.invoke(json!({"user": "test", "function": "argv", "cmdline": "a b"}))?;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let long = "x ".repeat(40_000);
    let refused = node.invoke(json!({"user": "test", "function": "argv", "cmdline": long}))?;
    assert_eq!(refused.status, 413, "{}", refused.text());
    assert!(refused.text().contains("cmdline"), "{}", refused.text());
    node.assert_serving()
}

/// Slow clients were cut off only while sending headers: a body that
/// stopped half-way held its connection for ever. Now a body that goes
/// 10 s without a byte is answered 408 and the connection freed.
#[test]
fn a_stalled_request_body_is_cut_off() -> Result<()> {
    use std::io::{Read, Write};
    let node = Node::with_functions()?;
    let mut stream = std::net::TcpStream::connect(&node.upload)?;
    stream.write_all(
        b"PUT /o/test/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let started = Instant::now();
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.windows(4).any(|w| w == b"\r\n\r\n") && reply.ends_with(b"ms") {
                    break;
                }
            }
            Err(error) => bail!("no answer after {:?}: {error}", started.elapsed()),
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        node.get(&node.upload, "/o/test/slow")?.status,
        404,
        "nothing half-written"
    );
    node.assert_serving()
}
