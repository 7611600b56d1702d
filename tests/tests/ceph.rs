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
        let scratch = tempfile::tempdir()?;
        let dir = scratch.path().join("ceph");
        let status = Command::new("bash")
            .arg(root().join("deploy/ceph/start.sh"))
            .arg(&dir)
            .env("FERRY_CEPH_POOL", "ferry")
            .env("FERRY_CEPH_MEMSTORE_BYTES", (512u64 << 20).to_string())
            .status()
            .context("running deploy/ceph/start.sh")?;
        if !status.success() {
            bail!("deploy/ceph/start.sh failed: {status}");
        }
        Ok(Ceph {
            dir,
            _scratch: scratch,
        })
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
