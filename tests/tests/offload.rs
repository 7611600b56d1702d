//! Near-data offload end to end: one compute node and two storage nodes,
//! each its own process on its own loopback address. Every test asserts
//! where each funclet ran (the nodes' own metrics) and what crossed the
//! wire, not only that the answer is right.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_tests::words::{text, wordcount, Rng};
use ferry_tests::{guests, Cluster, Node};
use serde_json::json;
use sha2::{Digest, Sha256};

const NODES: [(&str, &str, &str); 3] = [
    ("storage-0", "storage", "127.0.3.1"),
    ("storage-1", "storage", "127.0.3.2"),
    ("compute-0", "compute", "127.0.3.3"),
];

/// What the tests read from a node's `/metrics`, in one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Counters {
    funclets_local: f64,
    here_forbid: f64,
    here_fallback: f64,
    accepted: f64,
    declined: f64,
    failed: f64,
    trapped: f64,
    sent: f64,
    received: f64,
    object_reads: f64,
    offers: f64,
    offers_declined: f64,
}

fn counters(node: &Node) -> Result<Counters> {
    let metrics = node.scrape()?;
    let value = |sample: &str| metrics.value(sample);
    Ok(Counters {
        funclets_local: value("ferry_funclets_local_total"),
        here_forbid: value("ferry_funclets_here_total{reason=\"forbid_ndp\"}"),
        here_fallback: value("ferry_funclets_here_total{reason=\"fallback\"}"),
        accepted: value("ferry_offloads_total{result=\"accepted\"}"),
        declined: value("ferry_offloads_total{result=\"declined\"}"),
        failed: value("ferry_offloads_total{result=\"failed\"}"),
        trapped: value("ferry_offloads_total{result=\"trapped\"}"),
        sent: value("ferry_offload_bytes_total{direction=\"sent\"}"),
        received: value("ferry_offload_bytes_total{direction=\"received\"}"),
        object_reads: value("ferry_peer_requests_total{kind=\"ObjectRead\"}"),
        offers: value("ferry_peer_requests_total{kind=\"Offer\"}"),
        offers_declined: value("ferry_offers_total{outcome=\"declined\"}"),
    })
}

/// Offsets of the non-overlapping occurrences of `needle`.
fn grep(data: &[u8], needle: &[u8]) -> String {
    let mut found = Vec::new();
    let mut pos = 0;
    while pos + needle.len() <= data.len() {
        if &data[pos..pos + needle.len()] == needle {
            found.push(pos.to_string());
            pos += needle.len();
        } else {
            pos += 1;
        }
    }
    found.join(" ")
}

fn start_cluster(storage_extra: &[&str], compute_extra: &[&str]) -> Result<(Cluster, Vec<Node>)> {
    let cluster = Cluster::configure(&NODES)?;
    let storage_0 = cluster.start("storage-0", false, storage_extra)?;
    let storage_1 = cluster.start("storage-1", false, storage_extra)?;
    let compute = cluster.start("compute-0", true, compute_extra)?;
    Ok((cluster, vec![storage_0, storage_1, compute]))
}

/// The storage node (0 or 1) that placement names for `user/key`.
fn holder(compute: &Node, user: &str, key: &str) -> Result<usize> {
    let answer: serde_json::Value = serde_json::from_slice(
        &compute
            .get(&compute.upload, &format!("/p/{user}/{key}"))?
            .body,
    )?;
    match answer["node"].as_str() {
        Some("storage-0") => Ok(0),
        Some("storage-1") => Ok(1),
        other => bail!("placement of {key} names {other:?}"),
    }
}

#[test]
fn funclets_run_next_to_their_object_and_agree_with_the_baseline() -> Result<()> {
    let (_cluster, nodes) = start_cluster(&[], &[])?;
    let compute = &nodes[2];
    // One upload to the compute node reaches both storage nodes before the
    // upload is answered.
    let sha_wasm = std::fs::read(guests()?.join("tests/test/sha256.wasm"))?;
    let upload = compute.upload_wasm("ndp", "sha256", &sha_wasm)?;
    assert_eq!(upload.status, 200, "{}", upload.text());
    for storage in &nodes[..2] {
        let stored = storage.get(&storage.upload, "/f/ndp/sha256")?;
        assert_eq!(
            stored.status, 200,
            "the upload did not reach {}",
            storage.http
        );
        assert_eq!(stored.body, sha_wasm);
    }

    let mut rng = Rng(7);
    let mut objects = Vec::new();
    for i in 0..50usize {
        let len = match i {
            0 => 0,
            1 => 1,
            2 => 64 << 20,
            3 => 16 << 20,
            4 => 1 << 20,
            // Log-uniform from 16 B to 2 MiB.
            _ => 16usize << (rng.next_u64() % 17),
        } + if i > 4 {
            (rng.next_u64() % 4096) as usize
        } else {
            0
        };
        let data = text(&mut rng, len);
        let key = format!("obj{i}");
        let put = compute.put(&compute.upload, &format!("/o/ndp/{key}"), &data)?;
        assert_eq!(put.status, 200, "{key}: {}", put.text());
        objects.push((key, data));
    }
    let mut held = [0usize; 2];
    for (key, data) in &objects {
        let on = holder(compute, "ndp", key)?;
        held[on] += 1;
        let small = data.len() <= 1 << 20;
        let mut cases: Vec<(&str, String, (u16, String))> = vec![
            (
                "wordcount",
                key.clone(),
                if wordcount(data).is_empty() {
                    (500, format!("No object {key}"))
                } else {
                    (200, wordcount(data))
                },
            ),
            (
                "grep",
                format!("{key} w17"),
                if data.is_empty() {
                    (500, format!("No object {key}"))
                } else {
                    (200, grep(data, b"w17"))
                },
            ),
            (
                "sha256",
                key.clone(),
                (200, hex::encode(Sha256::digest(data))),
            ),
        ];
        if small {
            // The Rust SDK's funclets, on the smaller objects (time).
            cases.push(("wordcount_rs", key.clone(), cases[0].2.clone()));
            cases.push(("grep_rs", format!("{key} w17"), cases[1].2.clone()));
        }
        for (function, input, expected) in cases {
            for forbid_ndp in [false, true] {
                let before: Vec<Counters> = nodes.iter().map(counters).collect::<Result<_>>()?;
                let reply = compute.invoke(json!({
                    "user": "ndp", "function": function, "input_data": input, "forbid_ndp": forbid_ndp
                }))?;
                let after: Vec<Counters> = nodes.iter().map(counters).collect::<Result<_>>()?;
                let what = format!(
                    "{function} {key} ({} B) forbid_ndp={forbid_ndp}",
                    data.len()
                );
                assert_eq!((reply.status, reply.text()), expected.clone(), "{what}");
                let (b, a) = (&before, &after);
                let delta = |node: usize, f: fn(&Counters) -> f64| f(&a[node]) - f(&b[node]);
                if forbid_ndp {
                    // Ran on the compute node, which read the object over
                    // the transport from its holder.
                    assert_eq!(delta(2, |c| c.here_forbid), 1.0, "{what}");
                    assert_eq!(delta(2, |c| c.accepted), 0.0, "{what}");
                    assert_eq!(delta(on, |c| c.funclets_local), 0.0, "{what}");
                    assert_eq!(delta(on, |c| c.offers), 0.0, "{what}");
                    if !data.is_empty() {
                        assert!(delta(on, |c| c.object_reads) >= 1.0, "{what}");
                    }
                } else {
                    // Ran on the holder: one offer accepted there, the
                    // object never crossed the wire.
                    assert_eq!(delta(2, |c| c.accepted), 1.0, "{what}");
                    assert_eq!(delta(2, |c| c.funclets_local), 0.0, "{what}");
                    assert_eq!(delta(on, |c| c.funclets_local), 1.0, "{what}");
                    assert_eq!(delta(1 - on, |c| c.funclets_local), 0.0, "{what}");
                    assert_eq!(delta(on, |c| c.object_reads), 0.0, "{what}");
                    let moved = delta(2, |c| c.sent) + delta(2, |c| c.received);
                    assert!(moved > 0.0, "{what}: no snapshot bytes moved");
                    // Only the result travels back: grep searches the
                    // mapped object in place (the byte after a getMmap
                    // buffer is 0), as the others read it there.
                    if data.len() >= 16 << 20 {
                        assert!(
                            moved < data.len() as f64 / 4.0,
                            "{what}: {moved} snapshot bytes for a {} B object",
                            data.len()
                        );
                    }
                }
            }
        }
    }
    assert!(
        held[0] > 0 && held[1] > 0,
        "placement used one node: {held:?}"
    );
    Ok(())
}

/// `probe` (guests/c/test/probe.c): "KEY SPIN DIRTY_KIB TRAP".
fn probe(
    node: &Node,
    key: &str,
    spin: u32,
    dirty_kib: u32,
    trap: bool,
) -> Result<ferry_tests::Reply> {
    node.call(
        "test",
        "probe",
        &format!("{key} {spin} {dirty_kib} {}", u8::from(trap)),
    )
}

/// The output a probe gives when its funclet ran once with seed 41.
fn probe_expected(dirty_kib: u32) -> String {
    let mut sum: u64 = 0;
    for i in 0..dirty_kib as usize * 1024 {
        sum = sum
            .wrapping_mul(31)
            .wrapping_add(u64::from((i * 13 + 41) as u8));
    }
    format!("ret=42 sum={sum} calls=1")
}

/// A key that placement puts on storage node `on`.
fn key_on(compute: &Node, on: usize) -> Result<String> {
    for i in 0..100 {
        let key = format!("probe{i}");
        if holder(compute, "test", &key)? == on {
            return Ok(key);
        }
    }
    bail!("no key placed on storage-{on} in 100 tries")
}

#[test]
fn snapshots_of_every_size_travel_and_come_back() -> Result<()> {
    let (_cluster, nodes) = start_cluster(&[], &[])?;
    let compute = &nodes[2];
    let key = key_on(compute, 0)?;
    let storage = &nodes[0];
    let served =
        |kind: &str| storage.metric(&format!("ferry_peer_requests_total{{kind=\"{kind}\"}}"));
    // 0 KiB: only the heap's own pages; 512 KiB: inside the Offer; 16 MiB:
    // Offer, Accept, then Pages; 200 MiB, past one frame: Pages in 32 MiB
    // parts, and a Done whose other parts are fetched with FetchPages.
    for dirty_kib in [0u32, 512, 16 << 10, 200 << 10] {
        let before = counters(compute)?;
        let (pages_before, fetches_before) = (served("Pages")?, served("FetchPages")?);
        let reply = probe(compute, &key, 0, dirty_kib, false)?;
        let after = counters(compute)?;
        let (pages, fetches) = (
            served("Pages")? - pages_before,
            served("FetchPages")? - fetches_before,
        );
        assert_eq!(
            (reply.status, reply.text()),
            (200, probe_expected(dirty_kib)),
            "{dirty_kib} KiB"
        );
        assert_eq!(after.accepted - before.accepted, 1.0, "{dirty_kib} KiB");
        let (sent, received) = (after.sent - before.sent, after.received - before.received);
        let dirty = f64::from(dirty_kib) * 1024.0;
        assert!(
            sent >= dirty && sent < dirty + f64::from(4u32 << 20),
            "{dirty_kib} KiB: sent {sent}"
        );
        assert!(
            received >= dirty && received < dirty + f64::from(4u32 << 20),
            "{dirty_kib} KiB: received {received}"
        );
        // Parts of at most 32 MiB each way.
        let parts = |bytes: f64| (bytes / f64::from(32u32 << 20)).ceil();
        let sent_in_pages = if sent > f64::from(1u32 << 20) {
            parts(sent)
        } else {
            0.0
        };
        assert_eq!(pages, sent_in_pages, "{dirty_kib} KiB: Pages messages");
        assert_eq!(
            fetches,
            (parts(received) - 1.0).max(0.0),
            "{dirty_kib} KiB: FetchPages"
        );
    }
    // The baseline gives the same answer without moving a page.
    let before = counters(compute)?;
    let reply = compute.invoke(json!({"user": "test", "function": "probe",
        "input_data": format!("{key} 0 {} 0", 16 << 10), "forbid_ndp": true}))?;
    assert_eq!(reply.text(), probe_expected(16 << 10));
    let after = counters(compute)?;
    assert_eq!(
        (after.sent - before.sent, after.accepted - before.accepted),
        (0.0, 0.0)
    );
    Ok(())
}

#[test]
fn a_trap_on_the_storage_node_reaches_the_guest() -> Result<()> {
    let (_cluster, nodes) = start_cluster(&[], &[])?;
    let compute = &nodes[2];
    let key = key_on(compute, 1)?;
    let before = (counters(compute)?, counters(&nodes[1])?);
    let reply = probe(compute, &key, 0, 4, true)?;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().starts_with("Call failed (return value=1)"),
        "{}",
        reply.text()
    );
    assert!(
        reply.text().contains("trapped on storage-1"),
        "{}",
        reply.text()
    );
    let after = (counters(compute)?, counters(&nodes[1])?);
    assert_eq!(after.0.trapped - before.0.trapped, 1.0);
    assert_eq!(after.1.funclets_local - before.1.funclets_local, 1.0);
    // Not run again here.
    assert_eq!(after.0.funclets_local - before.0.funclets_local, 0.0);
    compute.assert_serving()
}

#[test]
fn a_busy_storage_node_declines_and_the_compute_node_runs_the_funclet() -> Result<()> {
    let (_cluster, nodes) = start_cluster(
        &["--offload-slots-max", "1", "--offload-queue-max", "0"],
        &[],
    )?;
    let compute = &nodes[2];
    let key = key_on(compute, 0)?;
    // Hold storage-0's one slot with a funclet that waits for object `key`.
    let id = compute
        .invoke(json!({"user": "test", "function": "probe", "input_data": format!("{key} 0 0 0 1"), "async": true}))?
        .text();
    nodes[0].wait_for(Duration::from_secs(30), |n| {
        Ok(counters(n)?.funclets_local >= 1.0)
    })?;
    let before = (counters(compute)?, counters(&nodes[0])?);
    let reply = probe(compute, &key, 0, 64, false)?;
    assert_eq!((reply.status, reply.text()), (200, probe_expected(64)));
    let after = (counters(compute)?, counters(&nodes[0])?);
    assert_eq!(after.0.declined - before.0.declined, 1.0);
    assert_eq!(after.0.here_fallback - before.0.here_fallback, 1.0);
    assert_eq!(after.1.offers_declined - before.1.offers_declined, 1.0);
    assert_eq!(after.1.funclets_local - before.1.funclets_local, 0.0);
    // Open the gate: the waiting one finishes on the storage node.
    assert_eq!(
        compute
            .put(&compute.upload, &format!("/o/test/{key}"), b"open")?
            .status,
        200
    );
    compute.wait_for(Duration::from_secs(120), |n| {
        let status = n
            .invoke(json!({"status": true, "id": id.parse::<u64>().unwrap_or(0)}))?
            .text();
        Ok(!status.starts_with("RUNNING"))
    })?;
    Ok(())
}

#[test]
fn a_storage_node_killed_mid_funclet_leaves_the_answer_right() -> Result<()> {
    let (_cluster, mut nodes) = start_cluster(&[], &[])?;
    let key = key_on(&nodes[2], 0)?;
    let compute = nodes.pop().context("compute")?;
    // The funclet waits on storage-0 for object `key`, which never comes;
    // run here after the kill, its read of `key` fails and it goes on.
    let input = format!("{key} 0 256 0 1");
    let caller = std::thread::spawn({
        let compute_http = compute.http.clone();
        move || -> Result<(u16, String)> {
            let reply = ureq::post(format!("http://{compute_http}/f/"))
                .config()
                .http_status_as_error(false)
                .build()
                .send(
                    json!({"user": "test", "function": "probe", "input_data": input}).to_string(),
                )?;
            let status = reply.status().as_u16();
            Ok((status, reply.into_body().read_to_string()?))
        }
    });
    nodes[0].wait_for(Duration::from_secs(30), |n| {
        Ok(counters(n)?.funclets_local >= 1.0)
    })?;
    let before = counters(&compute)?;
    nodes.remove(0).kill()?;
    let (status, body) = caller
        .join()
        .map_err(|_| anyhow::anyhow!("caller panicked"))??;
    // calls=1: the storage node's run never came back; the compute node ran
    // the funclet once from its untouched state.
    assert_eq!((status, body), (200, probe_expected(256)));
    let after = counters(&compute)?;
    assert_eq!(after.failed - before.failed, 1.0);
    assert_eq!(after.here_fallback - before.here_fallback, 1.0);
    compute.assert_serving()
}

#[test]
fn a_storage_node_that_does_not_answer_in_time_is_given_up_on() -> Result<()> {
    let (_cluster, nodes) = start_cluster(&[], &["--offload-ms-max", "500"])?;
    let compute = &nodes[2];
    let key = key_on(compute, 1)?;
    // Warm the connection, then freeze the storage node.
    assert_eq!(probe(compute, &key, 0, 0, false)?.text(), probe_expected(0));
    let pid = nodes[1].pid().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()?;
    let before = counters(compute)?;
    let started = Instant::now();
    let reply = probe(compute, &key, 0, 8, false);
    let waited = started.elapsed();
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()?;
    let reply = reply?;
    assert_eq!((reply.status, reply.text()), (200, probe_expected(8)));
    let after = counters(compute)?;
    assert_eq!(after.failed - before.failed, 1.0);
    assert_eq!(after.here_fallback - before.here_fallback, 1.0);
    assert!(
        waited >= Duration::from_millis(500),
        "gave up after {waited:?}"
    );
    Ok(())
}

/// The Offer says how long the compute node waits for Done, and the
/// storage node stops the funclet when that has passed. Before, a funclet
/// the compute node had given up on (and run itself) kept its slot and its
/// core on the storage node until the storage node's own 60 s call limit.
#[test]
fn a_funclet_the_compute_node_stopped_waiting_for_is_stopped_on_the_storage_node() -> Result<()> {
    let (_cluster, nodes) = start_cluster(&[], &["--offload-ms-max", "1000"])?;
    let compute = &nodes[2];
    let key = key_on(compute, 0)?;
    let storage = &nodes[0];
    let ended = |outcome: &str| {
        storage.metric(&format!(
            "ferry_funclets_ended_total{{outcome=\"{outcome}\"}}"
        ))
    };
    let (deadline_before, local_before) = (ended("deadline")?, counters(storage)?.funclets_local);
    let compute_before = counters(compute)?;
    // GATE 1: the funclet waits for object `key`, which never comes, on
    // the storage node and then on the compute node, until the call's 4 s.
    let started = Instant::now();
    let id = compute
        .invoke(
            json!({"user": "test", "function": "probe", "input_data": format!("{key} 0 0 0 1"),
                       "async": true, "timeout_ms": 4000}),
        )?
        .text();
    id.parse::<u64>()
        .with_context(|| format!("async call id, got {id:?}"))?;
    // Stopped on the storage node about 1 s after the Offer (the old way:
    // after 60 s).
    storage.wait_for(Duration::from_secs(20), |_| {
        Ok(ended("deadline")? == deadline_before + 1.0)
    })?;
    let stopped_after = started.elapsed();
    assert!(
        stopped_after < Duration::from_secs(10),
        "the storage node stopped the funclet {stopped_after:?} after the call started"
    );
    assert_eq!(counters(storage)?.funclets_local, local_before + 1.0);
    compute.wait_for(Duration::from_secs(20), |n| {
        Ok(counters(n)?.here_fallback == compute_before.here_fallback + 1.0)
    })?;
    let after = counters(compute)?;
    assert_eq!(after.failed - compute_before.failed, 1.0);
    compute.assert_serving()
}

#[test]
fn ten_thousand_offers_to_a_full_node_are_declined_and_its_capacity_comes_back() -> Result<()> {
    // No queue: a full node declines at once.
    let (_cluster, nodes) = start_cluster(
        &["--offload-slots-max", "2", "--offload-queue-max", "0"],
        &[],
    )?;
    let compute = &nodes[2];
    let key = key_on(compute, 0)?;
    let storage = &nodes[0];
    // Fill both slots with funclets that wait for object `key`.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = compute
            .invoke(json!({"user": "test", "function": "probe", "input_data": format!("{key} 0 0 0 1"), "async": true}))?
            .text();
        ids.push(id.parse::<u64>()?);
    }
    storage.wait_for(Duration::from_secs(30), |n| {
        Ok(counters(n)?.funclets_local >= 2.0)
    })?;
    let before = (counters(compute)?, counters(storage)?);
    let offers = 10_000;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (http, key) = (compute.http.clone(), key.clone());
            std::thread::spawn(move || -> Result<usize> {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut right = 0;
                for _ in 0..offers / 4 {
                    let body = json!({"user": "test", "function": "probe", "input_data": format!("{key} 0 0 0")});
                    let mut reply = agent.post(format!("http://{http}/f/")).send(body.to_string())?;
                    if reply.body_mut().read_to_string()? == probe_expected(0) {
                        right += 1;
                    }
                }
                Ok(right)
            })
        })
        .collect();
    let mut right = 0;
    for thread in threads {
        right += thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
    }
    let after = (counters(compute)?, counters(storage)?);
    assert_eq!(right, offers, "answers right");
    let declined = after.1.offers_declined - before.1.offers_declined;
    assert_eq!(
        declined, offers as f64,
        "declined by the storage node: {before:?} {after:?}"
    );
    assert_eq!(after.0.declined - before.0.declined, offers as f64);
    assert_eq!(
        after.0.here_fallback - before.0.here_fallback,
        offers as f64
    );
    assert_eq!(
        after.1.funclets_local - before.1.funclets_local,
        0.0,
        "nothing ran there meanwhile"
    );
    for id in &ids {
        let status = compute.invoke(json!({"status": true, "id": id}))?.text();
        assert_eq!(status, "RUNNING", "the slots stayed full through the flood");
    }
    assert_eq!(
        compute
            .put(&compute.upload, &format!("/o/test/{key}"), b"open")?
            .status,
        200
    );
    for id in ids {
        compute.wait_for(Duration::from_secs(120), |n| {
            Ok(!n
                .invoke(json!({"status": true, "id": id}))?
                .text()
                .starts_with("RUNNING"))
        })?;
    }
    // Full capacity is back: two funclets at once are both accepted.
    let before = (counters(compute)?, counters(storage)?);
    let pair: Vec<_> = (0..2)
        .map(|_| {
            let (http, key) = (compute.http.clone(), key.clone());
            std::thread::spawn(move || -> Result<String> {
                let body = json!({"user": "test", "function": "probe", "input_data": format!("{key} 300 0 0")});
                Ok(ureq::post(format!("http://{http}/f/")).send(body.to_string())?.into_body().read_to_string()?)
            })
        })
        .collect();
    for call in pair {
        assert_eq!(
            call.join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??,
            probe_expected(0)
        );
    }
    let after = (counters(compute)?, counters(storage)?);
    assert_eq!(after.0.accepted - before.0.accepted, 2.0);
    assert_eq!(after.0.declined - before.0.declined, 0.0);
    assert_eq!(after.1.funclets_local - before.1.funclets_local, 2.0);
    Ok(())
}
