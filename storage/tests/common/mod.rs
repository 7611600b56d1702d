//! Shared by the storage integration tests: a throwaway Ceph cluster, a
//! small test runner (these binaries set `harness = false` so that one
//! cluster serves every case and is stopped at the end, failures included),
//! and data helpers.

#![allow(dead_code)] // each test binary uses a different part

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context};

pub const MIB: usize = 1 << 20;

/// A one-monitor, one-OSD cluster from `deploy/ceph/start.sh`, stopped (and
/// its directory removed) by `deploy/ceph/stop.sh` when dropped.
pub struct Ceph {
    dir: PathBuf,
    pub conf: PathBuf,
    pub pool: String,
}

fn deploy_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/ceph")
        .join(name)
}

impl Ceph {
    /// Starts a cluster in a new temp directory. An error (never a skip)
    /// when Ceph is not installed or does not come up.
    pub fn start() -> anyhow::Result<Ceph> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-ceph-")
            .tempdir()
            .context("creating the cluster's directory")?
            .keep();
        let pool = "ferry".to_string();
        let script = deploy_script("start.sh");
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .env("FERRY_CEPH_POOL", &pool)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        // From here on the guard owns whatever did start.
        let ceph = Ceph {
            conf: dir.join("ceph.conf"),
            dir,
            pool,
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!(
                "{} failed ({}); Debian needs: apt-get install -y ceph-mon ceph-osd ceph-common\n{stdout}{stderr}",
                script.display(),
                output.status
            );
        }
        eprint!("{stdout}");
        eprintln!(
            "ceph: started in {:.2} s (script and all)",
            started.elapsed().as_secs_f64()
        );
        Ok(ceph)
    }
}

impl Drop for Ceph {
    fn drop(&mut self) {
        let script = deploy_script("stop.sh");
        match Command::new("bash").arg(&script).arg(&self.dir).output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "ceph: {} failed: {}{}",
                script.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => eprintln!("ceph: running {}: {e}", script.display()),
        }
    }
}

/// One named test case.
pub type Case<'a> = (String, Box<dyn Fn() -> anyhow::Result<()> + 'a>);

/// Counts of a run.
#[derive(Default)]
pub struct Tally {
    pub passed: usize,
    pub failed: Vec<String>,
    pub filtered: usize,
}

/// The name filters given on the command line (as `cargo test -- NAME`).
/// libtest's flags are accepted and ignored, with the values of those that
/// take one (`--test-threads 2`).
pub fn filters() -> Vec<String> {
    const TAKE_VALUE: [&str; 5] = [
        "--test-threads",
        "--skip",
        "--format",
        "--color",
        "--logfile",
    ];
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if TAKE_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    filters
}

/// Whether any case named with `prefix` passes the filters.
pub fn any_selected(prefix: &str, names: &[&str]) -> bool {
    let filters = filters();
    names
        .iter()
        .any(|name| selected(&filters, &format!("{prefix}{name}")))
}

fn selected(filters: &[String], name: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// Runs the cases that pass the filters, one after another, reporting each
/// as libtest does; a failing or panicking case does not stop the rest.
pub fn run_cases(cases: Vec<Case<'_>>, tally: &mut Tally) {
    let filters = filters();
    for (name, case) in cases {
        if !selected(&filters, &name) {
            tally.filtered += 1;
            continue;
        }
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(case))
            .unwrap_or_else(|_| Err(anyhow!("panicked")));
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(()) => {
                println!("test {name} ... ok ({ms} ms)");
                tally.passed += 1;
            }
            Err(e) => {
                println!("test {name} ... FAILED ({ms} ms)\n    {e:#}");
                tally.failed.push(name);
            }
        }
    }
}

/// Prints libtest's closing line and exits non-zero on any failure.
pub fn finish(tally: Tally) -> ! {
    if !tally.failed.is_empty() {
        println!("\nfailures:");
        for name in &tally.failed {
            println!("    {name}");
        }
    }
    let ok = tally.failed.is_empty();
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out",
        if ok { "ok" } else { "FAILED" },
        tally.passed,
        tally.failed.len(),
        tally.filtered
    );
    std::process::exit(if ok { 0 } else { 101 })
}

/// Runs `body` on a new glommio executor on this thread.
pub fn on_executor<T>(body: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .map_err(|e| anyhow!("starting executor: {e}"))?;
    executor.run(body)
}

/// Bytes that differ from block to block, so misplaced chunks show.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((i ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
        .collect()
}

pub fn check_same(got: &[u8], want: &[u8], what: &str) -> anyhow::Result<()> {
    ensure!(
        got.len() == want.len(),
        "{what}: got {} bytes, want {}",
        got.len(),
        want.len()
    );
    if let Some(at) = got.iter().zip(want).position(|(g, w)| g != w) {
        bail!(
            "{what}: first difference at byte {at}: got {}, want {}",
            got[at],
            want[at]
        );
    }
    Ok(())
}

/// Runs a command to completion; its stdout, or an error with its stderr.
pub fn run(command: &mut Command) -> anyhow::Result<Vec<u8>> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("running {shown}"))?;
    ensure!(
        output.status.success(),
        "{shown} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output.stdout)
}
