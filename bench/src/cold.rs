//! `ferry-bench cold`: first calls. Uploads the wasm under N fresh names
//! and calls each once, so every measured call is a function's first call
//! on the node (the upload itself is not timed).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;

use crate::load::new_histogram;
use crate::report::{self, Input, Summary};
use crate::{scrape, Target};

#[derive(Args)]
pub struct ColdArgs {
    #[command(flatten)]
    target: Target,
    /// The node's upload endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8002")]
    upload_url: String,
    /// The module to upload under each new name.
    #[arg(long)]
    wasm: PathBuf,
    /// How many first calls (new names) to measure.
    #[arg(long, default_value_t = 100)]
    calls: usize,
}

const COLD_CALLS_MAX: usize = 100_000;

pub fn cold(args: &ColdArgs) -> Result<()> {
    let target = &args.target;
    ensure!(
        (1..=COLD_CALLS_MAX).contains(&args.calls),
        "--calls must be between 1 and {COLD_CALLS_MAX}"
    );
    let wasm =
        std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    let input = Input::from_target(target)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // Benchmark traffic goes straight to the node, never through
        // a proxy named in the environment.
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = crate::invocation_url(&target.url);
    let metrics: Vec<String> = target
        .metrics
        .iter()
        .map(|u| scrape::metrics_url(u))
        .collect();
    let before = metrics
        .iter()
        .map(|u| scrape::scrape(u))
        .collect::<Result<Vec<_>>>()?;
    let mut histogram = new_histogram()?;
    let mut errors = 0;
    let mut error_samples = Vec::new();
    let run = std::process::id();
    let started = SystemTime::now();
    let mut timed = Duration::ZERO;
    for i in 0..args.calls {
        let name = format!("{}_cold_{run}_{i}", target.function);
        let upload = format!(
            "{}/f/{}/{name}",
            args.upload_url.trim_end_matches('/'),
            target.user
        );
        let mut reply = agent
            .put(&upload)
            .send(&wasm[..])
            .with_context(|| format!("uploading {name}"))?;
        let text = reply.body_mut().read_to_string().unwrap_or_default();
        if reply.status() != 200 {
            bail!("upload of {name} failed: HTTP {}: {text}", reply.status());
        }
        let body = input.message(target, &name);
        let sent = Instant::now();
        let outcome = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes());
        let outcome = match outcome {
            Ok(mut response) => {
                let text = response.body_mut().read_to_string().unwrap_or_default();
                match response.status().as_u16() {
                    200 => Ok(()),
                    status => Err(format!(
                        "HTTP {status}: {}",
                        text.lines().next().unwrap_or("")
                    )),
                }
            }
            Err(error) => Err(format!("sending: {error}")),
        };
        let elapsed = sent.elapsed();
        timed += elapsed;
        match outcome {
            Ok(()) => {
                let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
            }
            Err(reason) => {
                errors += 1;
                if error_samples.len() < 5 && !error_samples.contains(&reason) {
                    error_samples.push(reason);
                }
            }
        }
    }
    let after: Vec<Result<scrape::Scrape>> = metrics.iter().map(|u| scrape::scrape(u)).collect();
    let count = histogram.len();
    let calls = args.calls as u64;
    let summary = Summary {
        label: target.label.clone(),
        sweep: None,
        mode: "cold".into(),
        url: url.clone(),
        user: target.user.clone(),
        function: target.function.clone(),
        forbid_ndp: target.forbid_ndp,
        connections: 1,
        target_rate: None,
        duration_s: timed.as_secs_f64(),
        warmup_s: 0.0,
        started_unix_s: started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
        count,
        errors,
        // Calls per second of time spent in calls (uploads excluded).
        achieved_rate: count as f64 / timed.as_secs_f64().max(1e-9),
        latency_ms: report::latency(&histogram),
        percentiles: report::percentiles(&histogram),
        error_samples,
        nodes: metrics
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(u, (b, a))| match a {
                Ok(a) => report::counters(u, b, a, calls),
                Err(error) => report::unread(u, &format!("{error:#}")),
            })
            .collect(),
    };
    // One interval covering the run.
    let whole = started
        .elapsed()
        .unwrap_or(timed)
        .max(Duration::from_micros(1));
    report::write_files(
        &target.out,
        &target.label,
        &summary,
        std::slice::from_ref(&histogram),
        whole,
    )?;
    print!("{}", report::table(&summary));
    Ok(())
}
