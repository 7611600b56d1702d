//! Near-data offload on Ceph: a three-OSD memstore cluster from
//! `deploy/ceph/start.sh --osds 3` (osd.i under CRUSH host `storage-i`),
//! three storage nodes (storage-i's `ceph_host` is `storage-i`) and a
//! compute node, each its own process on its own loopback address.
//!
//! Every check is against Ceph's own answer (`ceph osd map`, the `rados`
//! CLI) and the nodes' metrics: a funclet runs on the storage node of its
//! object's acting primary OSD, and follows the OSD map when an OSD stops
//! and comes back.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use ferry_tests::words::{text, wordcount, Rng};
use ferry_tests::{root, Node, NodeOptions, Ports};
use serde_json::{json, Value};

const OSDS: usize = 3;
/// How long every node may take to see a new OSD map epoch: it checks
/// every second (storage/src/limits.rs, PLACEMENT_EPOCH_CHECK_MS).
const SETTLE: Duration = Duration::from_secs(5);

/// One three-OSD Ceph at a time: two at once on a two-core machine only
/// make both slow.
static CEPH_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A Ceph cluster in a scratch directory, stopped on drop.
struct Ceph {
    dir: PathBuf,
}

impl Ceph {
    fn start(scratch: &std::path::Path) -> Result<Ceph> {
        let dir = scratch.join("ceph");
        let started = Instant::now();
        let status = Command::new("bash")
            .arg(root().join("deploy/ceph/start.sh"))
            .arg(&dir)
            .args(["--osds", &OSDS.to_string()])
            .env("FERRY_CEPH_POOL", "ferry")
            .env("FERRY_CEPH_MEMSTORE_BYTES", (512u64 << 20).to_string())
            .status()
            .context("running deploy/ceph/start.sh")?;
        // From here on the guard owns whatever did start.
        let ceph = Ceph { dir };
        ensure!(status.success(), "deploy/ceph/start.sh failed: {status}");
        println!(
            "ceph: {OSDS} OSDs active+clean in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        Ok(ceph)
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("ceph.conf")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<Vec<u8>> {
        let out = Command::new(tool)
            .arg("-c")
            .arg(self.conf())
            .args(args)
            .output()
            .with_context(|| format!("running {tool}"))?;
        ensure!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.stdout)
    }

    fn rados_put(&self, object: &str, data: &[u8], scratch: &std::path::Path) -> Result<()> {
        let file = scratch.join("rados-in");
        std::fs::write(&file, data)?;
        self.run(
            "rados",
            &["-p", "ferry", "put", object, &file.to_string_lossy()],
        )?;
        Ok(())
    }

    fn rados_get(&self, object: &str, scratch: &std::path::Path) -> Result<Vec<u8>> {
        let file = scratch.join("rados-out");
        self.run(
            "rados",
            &["-p", "ferry", "get", object, &file.to_string_lossy()],
        )?;
        Ok(std::fs::read(file)?)
    }

    /// `ceph osd map`: the object's placement group and acting primary.
    fn osd_map(&self, object: &str) -> Result<(String, i64)> {
        let map: Value = serde_json::from_slice(
            &self.run("ceph", &["osd", "map", "ferry", object, "-f", "json"])?,
        )?;
        let pg = map["pgid"].as_str().context("osd map: pgid")?.to_owned();
        let primary = map["acting_primary"]
            .as_i64()
            .context("osd map: acting_primary")?;
        Ok((pg, primary))
    }

    /// `deploy/ceph/osd.sh DIR stop|start ID`.
    fn osd(&self, command: &str, id: i64) -> Result<()> {
        let status = Command::new("bash")
            .arg(root().join("deploy/ceph/osd.sh"))
            .arg(&self.dir)
            .args([command, &id.to_string()])
            .status()?;
        ensure!(status.success(), "osd.sh {command} {id}: {status}");
        Ok(())
    }
}

impl Drop for Ceph {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("deploy/ceph/stop.sh"))
            .arg(&self.dir)
            .status();
    }
}

/// Ceph, three storage nodes and a compute node on `{net}.1` .. `{net}.4`.
/// Fields drop in order: the nodes go before Ceph.
struct Arrangement {
    /// storage-0, storage-1, storage-2, compute-0.
    nodes: Vec<Node>,
    ceph: Ceph,
    scratch: tempfile::TempDir,
}

impl Arrangement {
    fn start(net: &str) -> Result<Arrangement> {
        // One arrangement starts at a time: each picks free ports (for its
        // monitor and its nodes) and binds them a moment later, and three
        // tests picking at once took one another's ports (a monitor that
        // could not bind). Once started, they run side by side.
        static STARTING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let scratch = tempfile::tempdir()?;
        let ceph = Ceph::start(scratch.path())?;
        // The script's contract: osd.i sits under CRUSH host storage-i.
        let tree: Value =
            serde_json::from_slice(&ceph.run("ceph", &["osd", "tree", "-f", "json"])?)?;
        for node in tree["nodes"].as_array().context("osd tree")? {
            if node["type"] == "host" {
                let name = node["name"].as_str().unwrap_or_default();
                assert_eq!(
                    node["children"].as_array().map(Vec::as_slice),
                    Some(&[json!(name.trim_start_matches("storage-").parse::<i64>()?)][..]),
                    "CRUSH host {name}"
                );
            }
        }
        let mut config = format!(
            "[storage]\nbackend = \"ceph\"\nceph_conf = \"{}\"\nceph_pool = \"ferry\"\n",
            ceph.conf().display()
        );
        let mut names = Vec::new();
        let mut ports = Ports::new();
        for i in 0..=OSDS {
            let host = format!("{net}.{}", i + 1);
            let (name, role) = if i < OSDS {
                (format!("storage-{i}"), "storage")
            } else {
                ("compute-0".to_owned(), "compute")
            };
            config.push_str(&format!(
                "[[nodes]]\nname = \"{name}\"\nrole = \"{role}\"\nhost = \"{host}\"\n\
                 http_port = {}\nupload_port = {}\ntransport_port = {}\n",
                ports.pick(&host)?,
                ports.pick(&host)?,
                ports.pick(&host)?
            ));
            if role == "storage" {
                config.push_str(&format!("ceph_host = \"{name}\"\n"));
            }
            names.push(name);
        }
        drop(ports);
        let path = scratch.path().join("cluster.toml");
        std::fs::write(&path, config)?;
        let mut nodes = Vec::new();
        for name in names {
            nodes.push(Node::start(NodeOptions {
                functions: name.starts_with("compute"),
                data: Some(scratch.path().join(&name)),
                cluster: Some((path.clone(), name)),
                ..Default::default()
            })?);
        }
        Ok(Arrangement {
            nodes,
            ceph,
            scratch,
        })
    }

    fn compute(&self) -> &Node {
        &self.nodes[OSDS]
    }
}

/// What the tests read from a node's `/metrics`, in one scrape.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    funclets_local: f64,
    here_forbid: f64,
    here_holds: f64,
    here_fallback: f64,
    accepted: f64,
}

fn counters(node: &Node) -> Result<Counters> {
    let metrics = node.scrape()?;
    let value = |sample: &str| metrics.value(sample);
    Ok(Counters {
        funclets_local: value("ferry_funclets_local_total"),
        here_forbid: value("ferry_funclets_here_total{reason=\"forbid_ndp\"}"),
        here_holds: value("ferry_funclets_here_total{reason=\"holds_object\"}"),
        here_fallback: value("ferry_funclets_here_total{reason=\"fallback\"}"),
        accepted: value("ferry_offloads_total{result=\"accepted\"}"),
    })
}

/// A node's placement of `ndp/KEY` (`GET /p/`): node, pg, primary OSD.
fn placement(node: &Node, key: &str) -> Result<(String, String, i64)> {
    let reply = node.get(&node.upload, &format!("/p/ndp/{key}"))?;
    ensure!(
        reply.status == 200,
        "/p/ndp/{key}: {} {}",
        reply.status,
        reply.text()
    );
    let answer: Value = serde_json::from_slice(&reply.body)?;
    Ok((
        answer["node"].as_str().context("node")?.to_owned(),
        answer["pg"].as_str().context("pg")?.to_owned(),
        answer["primary_osd"].as_i64().context("primary_osd")?,
    ))
}

/// Runs `ndp/wordcount` of `key` and checks the answer against the
/// reference and, from every node's metrics, where the funclet ran:
/// on storage node `on`, or with `forbid_ndp` on the compute node.
fn check_wordcount(
    cluster: &Arrangement,
    key: &str,
    expected: &str,
    forbid_ndp: bool,
    on: usize,
) -> Result<()> {
    let nodes = &cluster.nodes;
    let compute = OSDS;
    let before: Vec<Counters> = nodes.iter().map(counters).collect::<Result<_>>()?;
    let reply = cluster.compute().invoke(json!({
        "user": "ndp", "function": "wordcount", "input_data": key, "forbid_ndp": forbid_ndp
    }))?;
    let after: Vec<Counters> = nodes.iter().map(counters).collect::<Result<_>>()?;
    let what = format!("wordcount {key} forbid_ndp={forbid_ndp}");
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, expected),
        "{what}"
    );
    let delta = |node: usize, f: fn(&Counters) -> f64| f(&after[node]) - f(&before[node]);
    let ran: Vec<f64> = (0..nodes.len())
        .map(|n| delta(n, |c| c.funclets_local))
        .collect();
    if forbid_ndp {
        // Here, reading RADOS itself.
        assert_eq!(ran, [0.0, 0.0, 0.0, 1.0], "{what}: funclets run per node");
        assert_eq!(delta(compute, |c| c.here_forbid), 1.0, "{what}");
        assert_eq!(delta(compute, |c| c.accepted), 0.0, "{what}");
    } else {
        let mut want = [0.0; OSDS + 1];
        want[on] = 1.0;
        assert_eq!(
            ran, want,
            "{what}: funclets run per node (storage-{on} expected)"
        );
        assert_eq!(delta(compute, |c| c.accepted), 1.0, "{what}");
        assert_eq!(delta(compute, |c| c.here_fallback), 0.0, "{what}");
        assert_eq!(delta(compute, |c| c.here_holds), 0.0, "{what}");
    }
    Ok(())
}

/// Compares every node's placement of each key with `ceph osd map`, and
/// returns the storage node (index) of each key's acting primary and the
/// answers that disagreed. Right after the OSD map moved, `settle` gives
/// the nodes that long to see its new epoch (each checks every second).
fn compare_placements(
    cluster: &Arrangement,
    keys: &[&str],
    settle: Duration,
) -> Result<(Vec<usize>, Vec<String>)> {
    let mut ceph = Vec::new();
    let mut primaries = Vec::new();
    for key in keys {
        let (pg, primary) = cluster.ceph.osd_map(&format!("ndp/{key}"))?;
        ceph.push((format!("storage-{primary}"), pg, primary));
        primaries.push(usize::try_from(primary).context("acting primary")?);
    }
    let deadline = Instant::now() + settle;
    loop {
        let mut disagreements = Vec::new();
        for (key, want) in keys.iter().zip(&ceph) {
            for asked in &cluster.nodes {
                let answer = placement(asked, key)?;
                if answer != *want {
                    disagreements.push(format!(
                        "{key}: {} says {answer:?}, ceph osd map says {want:?}",
                        asked.http
                    ));
                }
            }
        }
        if disagreements.is_empty() || Instant::now() >= deadline {
            return Ok((primaries, disagreements));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn funclets_run_on_the_storage_node_of_the_primary_osd() -> Result<()> {
    let _one = CEPH_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Arrangement::start("127.0.5")?;
    let compute = cluster.compute();
    let scratch = cluster.scratch.path();

    // 30 objects, every other one written by ferry (the compute node's
    // object API, into RADOS) and the rest by the rados CLI.
    let mut rng = Rng(29);
    let mut objects = Vec::new();
    for i in 0..30usize {
        let len = match i {
            0 => 1,
            1 => 16 << 20,
            2 => 4 << 20,
            // Log-uniform from 16 B to 256 KiB.
            _ => (16usize << (rng.next_u64() % 15)) + (rng.next_u64() % 4096) as usize,
        };
        let data = text(&mut rng, len);
        let key = format!("obj{i}");
        if i % 2 == 0 {
            let put = compute.put(&compute.upload, &format!("/o/ndp/{key}"), &data)?;
            assert_eq!(put.status, 200, "{key}: {}", put.text());
        } else {
            cluster
                .ceph
                .rados_put(&format!("ndp/{key}"), &data, scratch)?;
        }
        objects.push((key, data));
    }

    let keys: Vec<&str> = objects.iter().map(|(key, _)| key.as_str()).collect();
    let (primaries, disagreements) = compare_placements(&cluster, &keys, Duration::ZERO)?;
    println!(
        "placement: {} of {} answers (30 objects x 4 nodes) disagreed with ceph osd map",
        disagreements.len(),
        keys.len() * cluster.nodes.len()
    );
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    let mut held = [0usize; OSDS];
    for primary in &primaries {
        held[*primary] += 1;
    }
    assert!(
        held.iter().all(|&n| n > 0),
        "every OSD is the primary of some object: {held:?}"
    );

    for ((key, data), primary) in objects.iter().zip(&primaries) {
        let expected = wordcount(data);
        let mut timed = Vec::new();
        for forbid_ndp in [false, true] {
            let started = Instant::now();
            check_wordcount(&cluster, key, &expected, forbid_ndp, *primary)?;
            timed.push(started.elapsed());
        }
        if data.len() >= 4 << 20 {
            println!(
                "wordcount {key} ({} B) on storage-{primary}: ndp {:?}, forbid_ndp {:?} (with the metric scrapes)",
                data.len(),
                timed[0],
                timed[1]
            );
        }
    }

    // What ferry wrote, rados reads, and what a funclet's caller put with
    // __faasmndp_put too.
    for (key, data) in objects.iter().step_by(2) {
        assert_eq!(
            &cluster.ceph.rados_get(&format!("ndp/{key}"), scratch)?,
            data,
            "{key}"
        );
    }
    let put = compute.call("ndp", "put", "from-put alpha beta gamma")?;
    assert_eq!((put.status, put.text().as_str()), (200, "OK"));
    assert_eq!(
        cluster.ceph.rados_get("ndp/from-put", scratch)?,
        b"alpha beta gamma"
    );
    // And a funclet reads it on its primary's node.
    let (_, primary) = cluster.ceph.osd_map("ndp/from-put")?;
    check_wordcount(
        &cluster,
        "from-put",
        "alpha\t1\nbeta\t1\ngamma\t1\n",
        false,
        usize::try_from(primary)?,
    )?;
    Ok(())
}

/// Calls `ndp/wordcount` over the objects in a loop, NDP and forbid_ndp in
/// turn, until stopped; every answer is checked against the reference.
struct Stream {
    stop: Arc<AtomicBool>,
    /// Calls answered so far.
    made: Arc<AtomicUsize>,
    thread: JoinHandle<Result<(usize, Vec<String>)>>,
}

impl Stream {
    fn start(http: &str, objects: &[(String, String)]) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicUsize::new(0));
        let (http, objects, stopped, counted) = (
            http.to_owned(),
            objects.to_vec(),
            stop.clone(),
            made.clone(),
        );
        let thread = std::thread::spawn(move || -> Result<(usize, Vec<String>)> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into();
            let (mut calls, mut wrong) = (0usize, Vec::new());
            while !stopped.load(Ordering::Relaxed) {
                let (key, expected) = &objects[calls % objects.len()];
                let forbid_ndp = calls % 2 == 1;
                let body = json!({"user": "ndp", "function": "wordcount", "input_data": key, "forbid_ndp": forbid_ndp});
                let mut reply = agent
                    .post(format!("http://{http}/f/"))
                    .send(body.to_string())?;
                let status = reply.status().as_u16();
                let text = reply.body_mut().read_to_string()?;
                if (status, &text) != (200, expected) {
                    wrong.push(format!(
                        "{key} forbid_ndp={forbid_ndp}: {status} {text:.200}"
                    ));
                }
                calls += 1;
                counted.store(calls, Ordering::Relaxed);
            }
            Ok((calls, wrong))
        });
        Stream { stop, made, thread }
    }

    /// Calls answered so far.
    fn calls(&self) -> usize {
        self.made.load(Ordering::Relaxed)
    }

    /// Waits until the stream has answered `more` calls after this point,
    /// or has ended (`finish` then says why).
    fn wait_for_calls(&self, more: usize, what: &str) -> Result<()> {
        let target = self.calls() + more;
        wait_until(what, || {
            Ok(self.calls() >= target || self.thread.is_finished())
        })?;
        Ok(())
    }

    /// Stops the stream and checks that every answer was right.
    fn finish(self) -> Result<usize> {
        self.stop.store(true, Ordering::Relaxed);
        let (calls, wrong) = self
            .thread
            .join()
            .map_err(|_| anyhow!("the stream of calls panicked"))??;
        ensure!(
            wrong.is_empty(),
            "{} of {calls} answers wrong: {wrong:#?}",
            wrong.len()
        );
        ensure!(calls > 0, "no calls made");
        Ok(calls)
    }
}

/// Waits until `done` holds, checking every 10 ms for at most 120 s (Ceph
/// marks an OSD down and moves the map in seconds; the bound only turns a
/// hang into a failure); returns how long that took.
fn wait_until(what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let started = Instant::now();
    while !done()? {
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "{what}: not within 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(started.elapsed())
}

/// The storage node the compute node's placement names for each key.
fn placed_on(compute: &Node, keys: &[&str]) -> Result<Vec<String>> {
    keys.iter()
        .map(|key| Ok(placement(compute, key)?.0))
        .collect()
}

#[test]
fn funclets_follow_the_primary_when_an_osd_stops_and_comes_back() -> Result<()> {
    let _one = CEPH_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Arrangement::start("127.0.6")?;
    let compute = cluster.compute();

    let mut rng = Rng(31);
    let mut objects = Vec::new();
    for i in 0..24usize {
        let len = 4096 + (rng.next_u64() % (60 << 10)) as usize;
        let data = text(&mut rng, len);
        let key = format!("doc{i}");
        let put = compute.put(&compute.upload, &format!("/o/ndp/{key}"), &data)?;
        assert_eq!(put.status, 200, "{key}: {}", put.text());
        objects.push((key, wordcount(&data)));
    }
    let keys: Vec<&str> = objects.iter().map(|(key, _)| key.as_str()).collect();
    let (original, disagreements) = compare_placements(&cluster, &keys, Duration::ZERO)?;
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    // The OSD that is primary for the most objects goes down.
    let victim = (0..OSDS)
        .max_by_key(|osd| original.iter().filter(|p| *p == osd).count())
        .context("no OSD")?;
    let moved: Vec<&str> = keys
        .iter()
        .zip(&original)
        .filter(|(_, p)| **p == victim)
        .map(|(key, _)| *key)
        .collect();
    ensure!(!moved.is_empty(), "osd.{victim} is primary for no object");

    // Stop it during a stream of calls; ferry follows once Ceph marks it
    // down and the OSD map epoch moves.
    let stream = Stream::start(&compute.http, &objects);
    stream.wait_for_calls(4, "the stream's first calls")?;
    let stopping = Instant::now();
    cluster.ceph.osd("stop", victim as i64)?;
    let stopped = stopping.elapsed();
    let old_node = format!("storage-{victim}");
    wait_until("the compute node's placement follows", || {
        Ok(!placed_on(compute, &moved)?.contains(&old_node))
    })?;
    let followed = stopping.elapsed();
    stream.wait_for_calls(8, "calls after the placement followed")?;
    let calls = stream.finish()?;
    println!(
        "osd.{victim} down (primary of {} of {} objects): stop took {stopped:?}; the compute node's placement followed {followed:?} after the stop; {calls} calls meanwhile, all right",
        moved.len(),
        keys.len()
    );

    // Under the new map: placement is Ceph's, none names the stopped OSD's
    // node, and funclets run on the new primaries' nodes.
    let (during, disagreements) = compare_placements(&cluster, &keys, SETTLE)?;
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert!(!during.contains(&victim), "{during:?}");
    for ((key, expected), on) in objects.iter().zip(&during) {
        check_wordcount(&cluster, key, expected, false, *on)?;
    }
    // forbid_ndp still runs on the compute node, reading RADOS itself.
    let (key, expected) = objects
        .iter()
        .find(|(key, _)| key == moved[0])
        .context("a moved object")?;
    check_wordcount(&cluster, key, expected, true, 0)?;

    // Bring it back, again during a stream of calls: placement returns.
    let stream = Stream::start(&compute.http, &objects);
    let starting = Instant::now();
    cluster.ceph.osd("start", victim as i64)?;
    let clean = starting.elapsed();
    let original_nodes: Vec<String> = original.iter().map(|p| format!("storage-{p}")).collect();
    let returned = wait_until("the compute node's placement returns", || {
        Ok(placed_on(compute, &keys)? == original_nodes)
    })?;
    let calls = stream.finish()?;
    println!(
        "osd.{victim} back: up and every PG active+clean {clean:?} after the start, the compute node's placement back {:?} after that; {calls} calls meanwhile, all right",
        returned
    );
    let (after, disagreements) = compare_placements(&cluster, &keys, SETTLE)?;
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert_eq!(after, original, "placement after osd.{victim} came back");
    for ((key, expected), on) in objects.iter().zip(&after) {
        check_wordcount(&cluster, key, expected, false, *on)?;
    }
    Ok(())
}

/// On Ceph, Faasm's state values live in RADOS (the pool's `ferry-state`
/// namespace, apart from the objects), and every write to one value is
/// applied by one storage node: appends from concurrent calls all land,
/// each one StateUpdate served by that one node.
#[test]
fn state_lives_in_rados_and_updates_apply_at_one_storage_node() -> Result<()> {
    let cluster = Arrangement::start("127.0.9")?;
    let compute = cluster.compute();
    let write = compute.call("test", "state", "write cephstate abcdefg")?;
    assert_eq!((write.status, write.text().as_str()), (200, "ok"));
    let stored = cluster.ceph.run(
        "rados",
        &[
            "-p",
            "ferry",
            "-N",
            "ferry-state",
            "get",
            "test/cephstate",
            "-",
        ],
    )?;
    assert_eq!(stored, b"abcdefg", "the value in RADOS's state namespace");
    let objects = cluster.ceph.run("rados", &["-p", "ferry", "ls"])?;
    assert!(
        !String::from_utf8_lossy(&objects).contains("test/cephstate"),
        "a state value is not an object"
    );
    // Every storage node reads the same value.
    for node in &cluster.nodes[..OSDS] {
        let got = node.get(&node.upload, "/s/test/cephstate")?;
        assert_eq!((got.status, got.text().as_str()), (200, "abcdefg"));
    }

    let served = |kind: &str| -> Result<Vec<f64>> {
        cluster
            .nodes
            .iter()
            .map(|node| node.metric(&format!("ferry_peer_requests_total{{kind=\"{kind}\"}}")))
            .collect()
    };
    let before = served("StateUpdate")?;
    const CALLS: usize = 6;
    const APPENDS: usize = 100;
    ferry_tests::append_state_at_once(&[compute; CALLS], "cephlog", APPENDS)?;
    let total = CALLS * APPENDS;
    let want = (CALLS * APPENDS * (APPENDS - 1) / 2) as i64;
    let read = compute.call("test", "state", &format!("appended cephlog {total}"))?;
    assert_eq!((read.status, read.text()), (200, format!("sum={want}")));
    let after = served("StateUpdate")?;
    let grew: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        grew.iter().filter(|n| **n > 0.0).count(),
        1,
        "one storage node applies every append: {grew:?}"
    );
    assert_eq!(grew.iter().sum::<f64>(), total as f64, "{grew:?}");
    assert_eq!(grew[OSDS], 0.0, "the compute node applies none");
    Ok(())
}
