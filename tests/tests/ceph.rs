//! `ferry up --backend ceph`: Faasm's NDP lines with the objects in a real
//! one-OSD Ceph cluster started by `deploy/ceph/start.sh`, and the objects
//! checked with the `rados` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use ferry_tests::{root, Node, NodeOptions};
use serde_json::json;

/// A Ceph cluster in a scratch directory, stopped on drop.
struct Ceph {
    dir: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Ceph {
    fn start() -> Result<Ceph> {
        // The two tests start their clusters one after the other, so that
        // two monitors never pick their ports at the same moment.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let scratch = tempfile::tempdir()?;
        let dir = scratch.path().join("ceph");
        let status = Command::new("bash")
            .arg(root().join("deploy/ceph/start.sh"))
            .arg(&dir)
            .env("FERRY_CEPH_POOL", "ferry")
            .env("FERRY_CEPH_MEMSTORE_BYTES", (512u64 << 20).to_string())
            .status()
            .context("running deploy/ceph/start.sh")?;
        // From here on the guard owns (and stops) whatever did start.
        let ceph = Ceph {
            dir,
            _scratch: scratch,
        };
        if !status.success() {
            bail!("deploy/ceph/start.sh failed: {status}");
        }
        Ok(ceph)
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("ceph.conf")
    }

    fn rados(&self, args: &[&str]) -> Result<Vec<u8>> {
        let out = Command::new("rados")
            .arg("-c")
            .arg(self.conf())
            .args(["-p", "ferry"])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("rados {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(out.stdout)
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

fn rados_get(ceph: &Ceph, object: &str, scratch: &Path) -> Result<Vec<u8>> {
    let file = scratch.join("out.bin");
    ceph.rados(&["get", object, &file.to_string_lossy()])?;
    Ok(std::fs::read(file)?)
}

#[test]
fn ndp_lines_with_objects_in_ceph() -> Result<()> {
    let ceph = Ceph::start()?;
    let conf = ceph.conf().to_string_lossy().into_owned();
    let node = Node::start(NodeOptions {
        functions: true,
        extra: vec![
            "--backend".into(),
            "ceph".into(),
            "--ceph-conf".into(),
            conf,
            "--ceph-pool".into(),
            "ferry".into(),
        ],
        ..Default::default()
    })?;
    for suffix in ["", "_rs"] {
        for forbid in [false, true] {
            let key = format!("key{suffix}{forbid}");
            let call = |function: &str, input: &str| {
                node.invoke(json!({"async": false, "user": "ndp", "function": format!("{function}{suffix}"), "input_data": input, "forbid_ndp": forbid}))
            };
            assert_eq!(call("put", &format!("{key} v1 v2 v3"))?.text(), "OK");
            assert_eq!(call("get", &key)?.text(), "v1 v2 v3");
            assert_eq!(call("wordcount", &key)?.text(), "v1\t1\nv2\t1\nv3\t1\n");
        }
    }
    // What __faasmndp_put wrote is a RADOS object named user/key.
    let scratch = tempfile::tempdir()?;
    assert_eq!(
        rados_get(&ceph, "ndp/keyfalse", scratch.path())?,
        b"v1 v2 v3"
    );
    // What the rados CLI wrote is what getMmap reads.
    let file = scratch.path().join("in.txt");
    std::fs::write(&file, b"from rados cli")?;
    ceph.rados(&["put", "ndp/from-cli", &file.to_string_lossy()])?;
    assert_eq!(
        node.call("ndp", "get", "from-cli")?.text(),
        "from rados cli"
    );
    // The object API over Ceph, including a range read.
    assert_eq!(
        node.put(&node.upload, "/o/ndp/http", b"0123456789")?.status,
        200
    );
    let part = node.get_with(&node.upload, "/o/ndp/http", ("Range", "bytes=2-4"))?;
    assert_eq!((part.status, part.text().as_str()), (206, "234"));
    node.assert_serving()?;
    Ok(())
}

#[test]
fn placement_matches_ceph_osd_map() -> Result<()> {
    let ceph = Ceph::start()?;
    let scratch = tempfile::tempdir()?;
    // start.sh puts osd.0 under CRUSH host storage-0.
    let mut ports = ferry_tests::Ports::new();
    let config = format!(
        "[storage]\nbackend = \"ceph\"\nceph_conf = \"{}\"\nceph_pool = \"ferry\"\n\
         [[nodes]]\nname = \"storage-0\"\nrole = \"all\"\nhost = \"127.0.0.1\"\nceph_host = \"storage-0\"\n\
         http_port = {}\nupload_port = {}\ntransport_port = {}\n",
        ceph.conf().display(),
        ports.pick("127.0.0.1")?,
        ports.pick("127.0.0.1")?,
        ports.pick("127.0.0.1")?,
    );
    drop(ports);
    let config_path = scratch.path().join("cluster.toml");
    std::fs::write(&config_path, config)?;
    let node = Node::start(NodeOptions {
        data: Some(scratch.path().join("data")),
        cluster: Some((config_path, "storage-0".into())),
        ..Default::default()
    })?;
    for i in 0..10 {
        let key = format!("object-{i}");
        let answer: serde_json::Value =
            serde_json::from_slice(&node.get(&node.upload, &format!("/p/ndp/{key}"))?.body)?;
        let out = Command::new("ceph")
            .arg("-c")
            .arg(ceph.conf())
            .args(["osd", "map", "ferry", &format!("ndp/{key}"), "-f", "json"])
            .output()?;
        if !out.status.success() {
            bail!("ceph osd map: {}", String::from_utf8_lossy(&out.stderr));
        }
        let map: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        println!(
            "ndp/{key}: ferry {answer} ceph pg {} acting_primary {}",
            map["pgid"], map["acting_primary"]
        );
        assert_eq!(answer["node"], "storage-0");
        assert_eq!(answer["pg"], map["pgid"], "{key}");
        assert_eq!(answer["primary_osd"], map["acting_primary"], "{key}");
    }
    Ok(())
}
