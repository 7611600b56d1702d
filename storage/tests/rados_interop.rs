//! The RADOS store and Ceph placement against Ceph's own tools on a real
//! cluster: objects written by the `rados` CLI read byte for byte through
//! the store and the other way round, the OSD limits, and placement
//! answers compared with `ceph osd map`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use ferry_storage::{
    CephNode, CephPlacementConfig, ObjectInfo, Placement, RadosConfig, RadosStore, StorageError,
};

use common::{check_same, on_executor, pattern, run, run_cases, Case, Ceph, Tally, MIB};

fn main() {
    let mut tally = Tally::default();
    match Ceph::start() {
        Ok(ceph) => {
            run_all(&ceph, &mut tally);
            drop(ceph);
        }
        Err(e) => {
            println!("test cluster ... FAILED\n    {e:#}");
            tally.failed.push("cluster".to_string());
        }
    }
    common::finish(tally)
}

fn run_all(ceph: &Ceph, tally: &mut Tally) {
    let store = match RadosStore::connect(RadosConfig::new(&ceph.conf, &ceph.pool)) {
        Ok(store) => store,
        Err(e) => {
            println!("test connect ... FAILED\n    {e:#}");
            tally.failed.push("connect".to_string());
            return;
        }
    };
    let store = &store;
    let cases: Vec<Case<'_>> = vec![
        case("cli_put_is_read_by_the_store", move || {
            cli_put_is_read_by_the_store(ceph, store)
        }),
        case("store_put_is_read_by_the_cli", move || {
            store_put_is_read_by_the_cli(ceph, store)
        }),
        case("objects_past_the_osd_limits_are_refused", move || {
            objects_past_the_osd_limits_are_refused(store)
        }),
        case("connect_fails_clearly", move || connect_fails_clearly(ceph)),
        case("placement_matches_ceph_osd_map", move || {
            placement_matches_ceph_osd_map(ceph, store)
        }),
        case("placement_follows_the_osd_map_epoch", move || {
            placement_follows_the_osd_map_epoch(ceph, store)
        }),
        case("placement_needs_a_node_on_the_osds_host", move || {
            placement_needs_a_node_on_the_osds_host(store)
        }),
    ];
    run_cases(cases, tally);
}

fn case<'a>(name: &str, f: impl Fn() -> anyhow::Result<()> + 'a) -> Case<'a> {
    (name.to_string(), Box::new(f))
}

fn rados(ceph: &Ceph) -> Command {
    let mut command = Command::new("rados");
    command.arg("-c").arg(&ceph.conf).arg("-p").arg(&ceph.pool);
    command
}

fn ceph_cli(ceph: &Ceph) -> Command {
    let mut command = Command::new("ceph");
    command.arg("-c").arg(&ceph.conf);
    command
}

fn cli_put_is_read_by_the_store(ceph: &Ceph, store: &RadosStore) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // A multi-chunk object (the CLI writes 4 MiB at a time), an empty one,
    // and one whose key needs the escape.
    let objects: [(&[u8], Vec<u8>); 3] = [
        (b"from-cli/big", pattern(11, 9 * MIB + 3)),
        (b"from-cli/empty", Vec::new()),
        (b"\xff\x00binary", pattern(12, 1000)),
    ];
    for (key, data) in &objects {
        let file = dir.path().join("object");
        std::fs::write(&file, data)?;
        let name = RadosStore::object_name("cli", key);
        run(rados(ceph).arg("put").arg(&name).arg(&file))?;
    }
    // And one under the user's prefix that is no key's name.
    let file = dir.path().join("stray");
    std::fs::write(&file, b"stray")?;
    run(rados(ceph)
        .arg("put")
        .arg("cli/~b64:not base64!")
        .arg(&file))?;

    on_executor(async {
        for (key, data) in &objects {
            let what = format!("{:?}", String::from_utf8_lossy(key));
            let got = store
                .get("cli", key, 0, u64::MAX)
                .await?
                .ok_or_else(|| anyhow!("{what} written by the CLI is missing"))?;
            check_same(&got, data, &format!("get of {what}"))?;
            let mut dst = vec![0u8; data.len() + 7];
            let n = store.read_into("cli", key, 0, &mut dst).await?;
            ensure!(n == Some(data.len()), "read_into of {what}: {n:?}");
            check_same(&dst[..data.len()], data, &format!("read_into of {what}"))?;
        }
        let mut want: Vec<ObjectInfo> = objects
            .iter()
            .map(|(key, data)| ObjectInfo {
                key: key.to_vec(),
                size_bytes: data.len() as u64,
            })
            .collect();
        want.sort_by(|a, b| a.key.cmp(&b.key));
        let listed = store.list("cli").await?;
        ensure!(
            listed == want,
            "list (the stray name must not show): {listed:?}"
        );
        Ok(())
    })
}

fn store_put_is_read_by_the_cli(ceph: &Ceph, store: &RadosStore) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let objects: [(&[u8], Vec<u8>); 3] = [
        (b"to-cli/big", pattern(21, 33 * MIB + 5)),
        (b"to-cli/empty", Vec::new()),
        ("κλειδί".as_bytes(), pattern(22, 4097)),
    ];
    on_executor(async {
        for (key, data) in &objects {
            store.put("store", key, data).await?;
        }
        Ok(())
    })?;
    for (key, data) in &objects {
        let name = RadosStore::object_name("store", key);
        let file = dir.path().join("out");
        run(rados(ceph).arg("get").arg(&name).arg(&file))?;
        let got = std::fs::read(&file)?;
        check_same(&got, data, &format!("rados get {name}"))?;
        let stat = String::from_utf8_lossy(&run(rados(ceph).arg("stat").arg(&name))?).into_owned();
        ensure!(
            stat.contains(&format!("size {}", data.len())),
            "rados stat {name}: {stat}"
        );
    }
    Ok(())
}

fn objects_past_the_osd_limits_are_refused(store: &RadosStore) -> anyhow::Result<()> {
    // The defaults: osd_max_object_size 128 MiB, osd_max_write_size 90 MiB;
    // a put is one write, so the smaller wins.
    let max = store.object_bytes_max();
    ensure!(max == 90 << 20, "object_bytes_max {max}, want 90 MiB");
    on_executor(async {
        let at_max = vec![0x5au8; max as usize];
        store
            .put("limits", b"at-max", &at_max)
            .await
            .context("putting an object of the maximum size")?;
        ensure!(store.stat("limits", b"at-max").await? == Some(max));
        for len in [max + 1, (128 << 20) + 1] {
            let data = vec![0u8; len as usize];
            let refused = store.put("limits", b"too-big", &data).await;
            ensure!(
                matches!(refused, Err(StorageError::ObjectTooLarge { len_bytes, max_bytes }) if len_bytes == len && max_bytes == max),
                "put of {len} bytes: {refused:?}"
            );
        }
        ensure!(store.stat("limits", b"too-big").await?.is_none());
        ensure!(store.delete("limits", b"at-max").await?);
        Ok(())
    })
}

fn connect_fails_clearly(ceph: &Ceph) -> anyhow::Result<()> {
    let missing_pool = RadosStore::connect(RadosConfig::new(&ceph.conf, "no-such-pool"));
    ensure!(
        matches!(
            &missing_pool,
            Err(StorageError::Rados {
                op: "opening pool",
                code: -2,
                ..
            })
        ),
        "{missing_pool:?}"
    );
    let missing_conf = RadosStore::connect(RadosConfig::new("/nonexistent/ceph.conf", "ferry"));
    ensure!(
        matches!(missing_conf, Err(StorageError::Rados { .. })),
        "{missing_conf:?}"
    );
    Ok(())
}

/// The CRUSH host of the cluster's one OSD: deploy/ceph/start.sh puts
/// osd.i under host `storage-i`.
const OSD_HOST: &str = "storage-0";

fn placement_for(
    store: &RadosStore,
    host: &str,
    epoch_check_ms: u64,
) -> Result<Placement, StorageError> {
    let nodes = vec![
        CephNode {
            name: "storage-0".to_string(),
            host: host.to_string(),
        },
        CephNode {
            name: "storage-1".to_string(),
            host: "some-other-host".to_string(),
        },
    ];
    Placement::ceph(
        store,
        CephPlacementConfig {
            epoch_check_ms,
            ..CephPlacementConfig::new(nodes)
        },
    )
}

/// `ceph osd map POOL NAME -f json`: (pgid, acting primary, epoch).
fn cli_osd_map(ceph: &Ceph, name: &str) -> anyhow::Result<(String, i64, u64)> {
    let out = run(ceph_cli(ceph).args(["osd", "map", &ceph.pool, name, "-f", "json"]))?;
    let json: serde_json::Value = serde_json::from_slice(&out).context("parsing ceph osd map")?;
    let field = |f: &str| {
        json.get(f)
            .cloned()
            .ok_or_else(|| anyhow!("no {f} in {json}"))
    };
    Ok((
        field("pgid")?.as_str().unwrap_or_default().to_string(),
        field("acting_primary")?.as_i64().unwrap_or(-1),
        field("epoch")?.as_u64().unwrap_or(0),
    ))
}

fn placement_matches_ceph_osd_map(ceph: &Ceph, store: &RadosStore) -> anyhow::Result<()> {
    let placement = placement_for(store, OSD_HOST, 1000)?;
    let local = placement.local();
    let keys: Vec<Vec<u8>> = (0..10)
        .map(|i| match i {
            7 => "κλειδί/7".as_bytes().to_vec(),
            8 => b"\xff binary 8".to_vec(),
            _ => format!("object-{i}").into_bytes(),
        })
        .collect();
    let mut pgs = std::collections::BTreeSet::new();
    for key in &keys {
        let name = RadosStore::object_name("placed", key);
        let ours = on_executor(async {
            let location = local.locate("placed", key).await?;
            let ceph = location
                .ceph
                .clone()
                .ok_or_else(|| anyhow!("no ceph location"))?;
            Ok((
                location.node.to_string(),
                ceph.pg.to_string(),
                ceph.primary_osd,
                ceph.epoch,
            ))
        })?;
        let cli = cli_osd_map(ceph, &name)?;
        println!(
            "    {name:<24} ferry: node {} pg {} primary osd.{} (e{})   ceph osd map: pg {} acting_primary {} (e{})",
            ours.0, ours.1, ours.2, ours.3, cli.0, cli.1, cli.2
        );
        ensure!(
            ours.1 == cli.0 && i64::from(ours.2) == cli.1,
            "{name}: ferry says {ours:?}, ceph osd map says {cli:?}"
        );
        ensure!(ours.0 == "storage-0", "{name} placed on {}", ours.0);
        pgs.insert(ours.1);
    }
    ensure!(pgs.len() > 1, "10 objects all in one pg: {pgs:?}");

    // Cached: no round trip, so far below a monitor command's ~0.2+ ms.
    let started = Instant::now();
    let lookups = 10_000;
    on_executor(async {
        for i in 0..lookups {
            local.locate("placed", &keys[i % keys.len()]).await?;
        }
        Ok(())
    })?;
    let per_lookup = started.elapsed() / lookups as u32;
    println!("    cached lookup: {per_lookup:?}");
    ensure!(
        per_lookup < Duration::from_micros(20),
        "cached lookups take {per_lookup:?}"
    );
    Ok(())
}

fn placement_follows_the_osd_map_epoch(ceph: &Ceph, store: &RadosStore) -> anyhow::Result<()> {
    let placement = placement_for(store, OSD_HOST, 100)?;
    let local = placement.local();
    let before = on_executor(async { Ok(local.locate("placed", b"epoch").await?.ceph) })?
        .ok_or_else(|| anyhow!("no ceph location"))?;
    // Any OSD map change moves the epoch; this one changes no placement.
    run(ceph_cli(ceph).args(["osd", "set", "noscrub"]))?;
    let cli_epoch = cli_osd_map(ceph, &RadosStore::object_name("placed", b"epoch"))?.2;
    ensure!(cli_epoch > before.epoch, "the osd map epoch did not move");
    // The watcher looks every 100 ms; the bound only turns a hang into a
    // failure.
    let deadline = Instant::now() + Duration::from_secs(60);
    while placement.epoch() < Some(cli_epoch) {
        ensure!(
            Instant::now() < deadline,
            "placement never saw epoch {cli_epoch}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = on_executor(async { Ok(local.locate("placed", b"epoch").await?.ceph) })?
        .ok_or_else(|| anyhow!("no ceph location"))?;
    println!(
        "    epoch {} -> {}: asked again, pg {} primary osd.{}",
        before.epoch, after.epoch, after.pg, after.primary_osd
    );
    ensure!(
        after.epoch >= cli_epoch,
        "the cached answer of epoch {} was used after epoch {cli_epoch}",
        before.epoch
    );
    ensure!((after.pg.as_ref(), after.primary_osd) == (before.pg.as_ref(), before.primary_osd));
    run(ceph_cli(ceph).args(["osd", "unset", "noscrub"]))?;
    Ok(())
}

fn placement_needs_a_node_on_the_osds_host(store: &RadosStore) -> anyhow::Result<()> {
    let placement = placement_for(store, "not-this-host", 1000)?;
    let unplaced = on_executor(async {
        Ok(placement
            .local()
            .locate("placed", b"k")
            .await
            .map(|l| l.node.to_string()))
    })?;
    ensure!(
        matches!(unplaced, Err(StorageError::NoNodeForOsd { osd: 0, .. })),
        "{unplaced:?}"
    );
    // An OSD placed by the config needs no host match.
    let nodes = vec![CephNode {
        name: "storage-9".to_string(),
        host: "not-this-host".to_string(),
    }];
    let placement = Placement::ceph(
        store,
        CephPlacementConfig {
            osd_nodes: BTreeMap::from([(0, "storage-9".to_string())]),
            ..CephPlacementConfig::new(nodes)
        },
    )?;
    let node = on_executor(async {
        Ok(placement
            .local()
            .locate("placed", b"k")
            .await?
            .node
            .to_string())
    })?;
    ensure!(node == "storage-9", "{node}");
    Ok(())
}
