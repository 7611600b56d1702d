//! A cluster on loopback: two storage nodes and a compute node, each its
//! own process on its own 127.0.0.x address, configured by one file. The
//! compute node reads and writes objects over the transport.

use anyhow::Result;
use ferry_tests::{Cluster, Node};
use serde_json::json;

#[test]
fn compute_node_reads_and_writes_objects_on_the_storage_nodes() -> Result<()> {
    let cluster = Cluster::configure(&[
        ("storage-a", "storage", "127.0.0.2"),
        ("storage-b", "storage", "127.0.0.3"),
        ("compute-a", "compute", "127.0.0.4"),
    ])?;
    let start = |name: &str, functions: bool| cluster.start(name, functions, &[]);
    let storage_a = start("storage-a", false)?;
    let storage_b = start("storage-b", false)?;
    let compute = start("compute-a", true)?;
    assert!(compute.http.starts_with("127.0.0.4:"), "{}", compute.http);

    // Faasm's lines on the compute node; the objects live on storage nodes.
    for i in 0..12 {
        let key = format!("doc{i}");
        let put = compute.call("ndp", "put", &format!("{key} v1 v2 v3"))?;
        assert_eq!((put.status, put.text().as_str()), (200, "OK"), "{key}");
        for forbid in [false, true] {
            let reply = compute.invoke(json!({"user": "ndp", "function": "wordcount", "input_data": key, "forbid_ndp": forbid}))?;
            assert_eq!(
                (reply.status, reply.text().as_str()),
                (200, "v1\t1\nv2\t1\nv3\t1\n"),
                "{key}"
            );
        }
        let on_a = storage_a
            .get(&storage_a.upload, &format!("/o/ndp/{key}"))?
            .status
            == 200;
        let on_b = storage_b
            .get(&storage_b.upload, &format!("/o/ndp/{key}"))?
            .status
            == 200;
        assert!(
            on_a ^ on_b,
            "{key} must be on exactly one storage node (a={on_a}, b={on_b})"
        );
    }
    // Both storage nodes hold some of the twelve keys.
    let count = |node: &Node| -> Result<usize> {
        let list: serde_json::Value =
            serde_json::from_slice(&node.get(&node.upload, "/o/ndp/")?.body)?;
        Ok(list.as_array().map_or(0, Vec::len))
    };
    let (a, b) = (count(&storage_a)?, count(&storage_b)?);
    assert_eq!(a + b, 12);
    assert!(
        a > 0 && b > 0,
        "rendezvous placement put {a} keys on a and {b} on b"
    );
    // Every node's placement names the node that holds the key.
    for i in 0..12 {
        let key = format!("doc{i}");
        let on_a = storage_a
            .get(&storage_a.upload, &format!("/o/ndp/{key}"))?
            .status
            == 200;
        let expected = if on_a { "storage-a" } else { "storage-b" };
        for node in [&compute, &storage_a, &storage_b] {
            let answer: serde_json::Value =
                serde_json::from_slice(&node.get(&node.upload, &format!("/p/ndp/{key}"))?.body)?;
            assert_eq!(answer["node"], expected, "{key}");
        }
    }
    // The reads and writes went over the transport.
    for node in [&storage_a, &storage_b] {
        let metrics = node.get(&node.http, "/metrics")?.text();
        for kind in ["ObjectRead", "ObjectWrite"] {
            let line = metrics
                .lines()
                .find(|l| l.starts_with(&format!("ferry_peer_requests_total{{kind=\"{kind}\"}}")))
                .unwrap_or_default();
            let count: u64 = line
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(count > 0, "no {kind} served over the transport: {line:?}");
        }
    }
    // The compute node's object API sees the union.
    let list: serde_json::Value =
        serde_json::from_slice(&compute.get(&compute.upload, "/o/ndp/")?.body)?;
    assert_eq!(list.as_array().map_or(0, Vec::len), 12);

    // A storage node that goes away: calls that need it fail clearly, the
    // compute node keeps serving the others.
    let gone_keys: Vec<String> = (0..12)
        .map(|i| format!("doc{i}"))
        .filter(|key| {
            storage_b
                .get(&storage_b.upload, &format!("/o/ndp/{key}"))
                .map(|r| r.status == 200)
                .unwrap_or(false)
        })
        .collect();
    storage_b.kill()?;
    let reply = compute.call("ndp", "get", &gone_keys[0])?;
    assert_eq!(reply.status, 500, "{}", reply.text());
    compute.assert_serving()?;
    let kept = (0..12)
        .map(|i| format!("doc{i}"))
        .find(|k| !gone_keys.contains(k));
    if let Some(key) = kept {
        assert_eq!(compute.call("ndp", "get", &key)?.text(), "v1 v2 v3");
    }
    Ok(())
}

/// Every object operation of a compute node goes over the transport to
/// the node that holds the object: a 40 MiB HTTP put streams on in ten
/// 4 MiB parts as they arrive, a GET of it is ten requests, one per part
/// the client takes; listing and deleting are one message to each node /
/// to the holder.
#[test]
fn large_objects_stream_over_the_transport_both_ways() -> Result<()> {
    let cluster = Cluster::configure(&[
        ("storage-a", "storage", "127.0.4.1"),
        ("storage-b", "storage", "127.0.4.2"),
        ("compute-a", "compute", "127.0.4.3"),
    ])?;
    let storage = [
        cluster.start("storage-a", false, &[])?,
        cluster.start("storage-b", false, &[])?,
    ];
    let compute = cluster.start("compute-a", false, &[])?;
    let data: Vec<u8> = (0..40u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let placed: serde_json::Value =
        serde_json::from_slice(&compute.get(&compute.upload, "/p/u/big")?.body)?;
    let holder = &storage[usize::from(placed["node"] == "storage-b")];
    let kind = |node: &ferry_tests::Node, kind: &str| {
        node.metric(&format!("ferry_peer_requests_total{{kind=\"{kind}\"}}"))
    };

    let writes = kind(holder, "ObjectWrite")?;
    let put = compute.put(&compute.upload, "/o/u/big", &data)?;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        kind(holder, "ObjectWrite")? - writes,
        10.0,
        "40 MiB in 4 MiB parts"
    );
    let stored = holder.get(&holder.upload, "/o/u/big")?;
    assert!(stored.body == data, "the holder has the object as sent");

    let reads = kind(holder, "ObjectRead")?;
    let got = compute.get(&compute.upload, "/o/u/big")?;
    assert!(
        got.status == 200 && got.body == data,
        "read back through the compute node"
    );
    assert_eq!(kind(holder, "ObjectRead")? - reads, 10.0, "4 MiB a part");

    let lists: Vec<f64> = storage
        .iter()
        .map(|n| kind(n, "ObjectList"))
        .collect::<Result<_>>()?;
    let listed: serde_json::Value =
        serde_json::from_slice(&compute.get(&compute.upload, "/o/u/")?.body)?;
    assert_eq!(listed, json!([{"key": "big", "size": 40u64 << 20}]));
    for (node, before) in storage.iter().zip(lists) {
        assert_eq!(kind(node, "ObjectList")? - before, 1.0);
    }

    let deletes = kind(holder, "ObjectDelete")?;
    assert_eq!(compute.delete(&compute.upload, "/o/u/big")?.status, 200);
    assert_eq!(compute.delete(&compute.upload, "/o/u/big")?.status, 404);
    assert_eq!(kind(holder, "ObjectDelete")? - deletes, 2.0);
    assert_eq!(holder.get(&holder.upload, "/o/u/big")?.status, 404);
    Ok(())
}

/// Faasm's state on a cluster lives on the storage node placement names
/// for (user, key), in that node's state store: a value written through
/// one compute node (over HTTP or by a function) is read through another,
/// every access is one transport request to that node, and the other
/// storage node holds nothing under the key.
#[test]
fn state_lives_on_the_storage_node_placement_names() -> Result<()> {
    let cluster = Cluster::configure(&[
        ("storage-a", "storage", "127.0.5.1"),
        ("storage-b", "storage", "127.0.5.2"),
        ("compute-a", "compute", "127.0.5.3"),
        ("compute-b", "compute", "127.0.5.4"),
    ])?;
    let storage = [
        cluster.start("storage-a", false, &[])?,
        cluster.start("storage-b", false, &[])?,
    ];
    let compute_a = cluster.start("compute-a", true, &[])?;
    let compute_b = cluster.start("compute-b", true, &[])?;
    let placed: serde_json::Value =
        serde_json::from_slice(&compute_a.get(&compute_a.upload, "/p/test/shared")?.body)?;
    let holder_index = usize::from(placed["node"] == "storage-b");
    let (holder, other) = (&storage[holder_index], &storage[1 - holder_index]);
    // Both compute nodes place the key alike.
    let placed_b: serde_json::Value =
        serde_json::from_slice(&compute_b.get(&compute_b.upload, "/p/test/shared")?.body)?;
    assert_eq!(placed_b["node"], placed["node"]);
    let kind = |node: &Node, kind: &str| {
        node.metric(&format!("ferry_peer_requests_total{{kind=\"{kind}\"}}"))
    };
    let counts = |node: &Node| -> Result<[f64; 2]> {
        Ok([kind(node, "ObjectWrite")?, kind(node, "ObjectRead")?])
    };
    let other_before = counts(other)?;

    // An HTTP write through compute-a is one write at the holder.
    let [writes, reads] = counts(holder)?;
    let put = compute_a.put(&compute_a.upload, "/s/test/shared", b"fromhttp")?;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(counts(holder)?, [writes + 1.0, reads]);
    // Read through compute-b: over HTTP, one read; by a function, two
    // (`read` asks the size, then the bytes).
    let got = compute_b.get(&compute_b.upload, "/s/test/shared")?;
    assert_eq!((got.status, got.text().as_str()), (200, "fromhttp"));
    assert_eq!(counts(holder)?, [writes + 1.0, reads + 1.0]);
    let read = compute_b.call("test", "state", "read shared")?;
    assert_eq!((read.status, read.text().as_str()), (200, "8:fromhttp"));
    assert_eq!(counts(holder)?, [writes + 1.0, reads + 3.0]);

    // A function's write through compute-a is one write at the holder,
    // and compute-b's function reads it.
    let write = compute_a.call("test", "state", "write shared abcdefg")?;
    assert_eq!((write.status, write.text().as_str()), (200, "ok"));
    assert_eq!(counts(holder)?, [writes + 2.0, reads + 3.0]);
    let read = compute_b.call("test", "state", "read shared")?;
    assert_eq!((read.status, read.text().as_str()), (200, "7:abcdefg"));
    assert_eq!(counts(holder)?, [writes + 2.0, reads + 5.0]);

    // The value is in the holder's state store, not its objects; the
    // other storage node holds nothing under the key and served nothing.
    let direct = holder.get(&holder.upload, "/s/test/shared")?;
    assert_eq!((direct.status, direct.text().as_str()), (200, "abcdefg"));
    assert_eq!(holder.get(&holder.upload, "/o/test/shared")?.status, 404);
    assert_eq!(other.get(&other.upload, "/s/test/shared")?.status, 404);
    assert_eq!(other.get(&other.upload, "/o/test/shared")?.status, 404);
    assert_eq!(counts(other)?, other_before);

    // A value larger than one HTTP part streams to the holder's state
    // store in 4 MiB writes, and is read back through the other node.
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    let [writes, reads] = counts(holder)?;
    let put = compute_a.put(&compute_a.upload, "/s/test/shared", &big)?;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        counts(holder)?,
        [writes + 5.0, reads],
        "20 MiB in 4 MiB parts"
    );
    let got = compute_b.get(&compute_b.upload, "/s/test/shared")?;
    assert!(
        got.status == 200 && got.body == big,
        "read back through compute-b"
    );
    assert!(holder.get(&holder.upload, "/s/test/shared")?.body == big);
    assert_eq!(holder.get(&holder.upload, "/o/test/shared")?.status, 404);
    assert_eq!(other.get(&other.upload, "/s/test/shared")?.status, 404);
    assert_eq!(counts(other)?, other_before);
    Ok(())
}

/// Faasm state updates from two compute nodes at once lose nothing: each
/// append is one StateUpdate message applied by the storage node that
/// holds the value, under its lock for it, and nothing of the value is
/// read back over the wire to append.
#[test]
fn state_appends_from_two_compute_nodes_at_once_all_land() -> Result<()> {
    let cluster = Cluster::configure(&[
        ("storage-a", "storage", "127.0.6.1"),
        ("compute-a", "compute", "127.0.6.2"),
        ("compute-b", "compute", "127.0.6.3"),
    ])?;
    let holder = cluster.start("storage-a", false, &[])?;
    let compute_a = cluster.start("compute-a", true, &[])?;
    let compute_b = cluster.start("compute-b", true, &[])?;
    let kind = |kind: &str| holder.metric(&format!("ferry_peer_requests_total{{kind=\"{kind}\"}}"));
    let (updates, reads) = (kind("StateUpdate")?, kind("ObjectRead")?);
    const CALLS_PER_NODE: usize = 4;
    const APPENDS: usize = 200;
    let callers: Vec<&Node> = (0..CALLS_PER_NODE)
        .flat_map(|_| [&compute_a, &compute_b])
        .collect();
    ferry_tests::append_state_at_once(&callers, "log", APPENDS)?;
    let total = 2 * CALLS_PER_NODE * APPENDS;
    // Every call appended 0..APPENDS-1: each integer's sum, once per call.
    let want = (2 * CALLS_PER_NODE * APPENDS * (APPENDS - 1) / 2) as i64;
    let read = compute_a.call("test", "state", &format!("appended log {total}"))?;
    assert_eq!((read.status, read.text()), (200, format!("sum={want}")));
    assert_eq!(
        kind("StateUpdate")?,
        updates + total as f64,
        "one update per append"
    );
    // The appended value was read once, by the check above.
    assert_eq!(kind("ObjectRead")?, reads + 1.0, "no append read the value");
    Ok(())
}

/// `faasm://` shared files are the user's objects under `faasm/`: what a
/// call on one compute node writes is stored on the storage node placement
/// names, and a call on another compute node opens it.
#[test]
fn faasm_shared_files_follow_the_object_store_across_nodes() -> Result<()> {
    let cluster = Cluster::configure(&[
        ("storage-a", "storage", "127.0.7.1"),
        ("compute-a", "compute", "127.0.7.2"),
        ("compute-b", "compute", "127.0.7.3"),
    ])?;
    let holder = cluster.start("storage-a", false, &[])?;
    let compute_a = cluster.start("compute-a", true, &[])?;
    let compute_b = cluster.start("compute-b", true, &[])?;
    let wasm = std::fs::read(ferry_tests::guests()?.join("tests/test/files.wasm"))?;
    for node in [&compute_a, &compute_b] {
        let up = node.upload_wasm("test", "files", &wasm)?;
        assert_eq!(up.status, 200, "{}", up.text());
    }
    let first_line = |reply: &ferry_tests::Reply, prefix: &str| -> String {
        reply
            .text()
            .lines()
            .find_map(|line| line.strip_prefix(prefix).map(str::to_owned))
            .unwrap_or_default()
    };
    let wrote = compute_a.call("test", "files", "from compute-a")?;
    assert_eq!(wrote.status, 200, "{}", wrote.text());
    assert_eq!(first_line(&wrote, "shared before="), "(none)");
    // The storage node holds it as an object of the user.
    let object = "/o/test/faasm/some_dir/shared.txt";
    let stored = holder.get(&holder.upload, object)?;
    assert_eq!(
        (stored.status, stored.text().as_str()),
        (200, "from compute-a")
    );
    let read = compute_b.call("test", "files", "from compute-b")?;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(first_line(&read, "shared before="), "from compute-a");
    assert_eq!(holder.get(&holder.upload, object)?.text(), "from compute-b");
    // compute-a's own copy is refreshed from the object at its next open.
    let again = compute_a.call("test", "files", "again")?;
    assert_eq!(first_line(&again, "shared before="), "from compute-b");
    Ok(())
}
