//! The cluster secret between real nodes: a compute node and a storage node
//! that do not share it exchange no object traffic, whichever of them
//! lacks it; with the same secret objects flow as before.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use ferry_tests::{Cluster, Node, NodeOptions};

const SECRET_A: &str = "cluster-secret-a-0123456789abcdef";
const SECRET_B: &str = "cluster-secret-b-0123456789abcdef";

/// The cluster config with `[cluster] secret = secret` (or none), as its own file.
fn config_with(cluster: &Cluster, name: &str, secret: Option<&str>) -> Result<PathBuf> {
    let mut text = std::fs::read_to_string(&cluster.config)?;
    if let Some(secret) = secret {
        text.push_str(&format!("[cluster]\nsecret = \"{secret}\"\n"));
    }
    let path = cluster.scratch.path().join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn start(cluster: &Cluster, config: &Path, name: &str) -> Result<Node> {
    Node::start(NodeOptions {
        data: Some(cluster.scratch.path().join(name)),
        cluster: Some((config.to_owned(), name.to_owned())),
        ..Default::default()
    })
}

/// Transport requests the storage node served, of every kind.
fn served(storage: &Node) -> Result<f64> {
    let text = storage.get(&storage.http, "/metrics")?.text();
    Ok(text
        .lines()
        .filter(|line| line.starts_with("ferry_peer_requests_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

#[test]
fn nodes_that_do_not_share_the_secret_exchange_no_objects() -> Result<()> {
    let cluster = Cluster::configure(&[
        ("storage-s", "storage", "127.0.0.5"),
        ("compute-s", "compute", "127.0.0.6"),
    ])?;
    let with_a = config_with(&cluster, "a", Some(SECRET_A))?;
    let with_b = config_with(&cluster, "b", Some(SECRET_B))?;
    let without = config_with(&cluster, "none", None)?;
    let storage = start(&cluster, &with_a, "storage-s")?;

    // Another secret on the compute node, then none: every write is
    // refused at Hello, and the storage node serves nothing.
    for (config, what) in [(&with_b, "another secret"), (&without, "no secret")] {
        let compute = start(&cluster, config, "compute-s")?;
        let put = compute.put(&compute.upload, "/o/test/doc", b"private bytes")?;
        ensure!(
            put.status == 502,
            "compute node with {what}: PUT answered {} {}",
            put.status,
            put.text()
        );
        let list = compute.get(&compute.upload, "/o/test/")?;
        ensure!(
            list.status == 502,
            "compute node with {what}: list answered {}",
            list.status
        );
        ensure!(
            storage.get(&storage.upload, "/o/test/doc")?.status == 404,
            "the object reached the storage node from a node with {what}"
        );
        ensure!(
            served(&storage)? == 0.0,
            "the storage node served a node with {what}"
        );
        compute.kill()?;
    }

    // The same secret: the same write goes through (after the pool's backoff).
    let compute = start(&cluster, &with_a, "compute-s")?;
    let started = Instant::now();
    loop {
        let put = compute.put(&compute.upload, "/o/test/doc", b"private bytes")?;
        if put.status == 200 {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "with the same secret: {} {}",
            put.status,
            put.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(storage.get(&storage.upload, "/o/test/doc")?.text() == "private bytes");
    ensure!(served(&storage)? > 0.0);
    drop(compute);

    // And a storage node with another secret gets nothing from a compute
    // node that has the right one.
    let storage = {
        storage.kill()?;
        start(&cluster, &with_b, "storage-s")?
    };
    let compute = start(&cluster, &with_a, "compute-s")?;
    let put = compute.put(&compute.upload, "/o/test/other", b"more private bytes")?;
    ensure!(
        put.status == 502,
        "PUT to a storage node with another secret: {}",
        put.status
    );
    ensure!(storage.get(&storage.upload, "/o/test/other")?.status == 404);
    ensure!(
        served(&storage)? == 0.0,
        "a storage node with another secret was served to"
    );
    Ok(())
}
