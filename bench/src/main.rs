//! `ferry-bench`: closed-loop HTTP load against a ferry (or Faasm) node.
//!
//! `connections` threads each keep one HTTP/1.1 connection and send the
//! Faasm JSON message back to back for `duration`; every latency goes into
//! an HdrHistogram (1 us .. 60 s, 3 significant digits). `--cold N`
//! instead uploads the function under N fresh names and calls each once:
//! the first call of a function on a node.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use hdrhistogram::Histogram;

#[derive(Parser, Clone)]
#[command(
    name = "ferry-bench",
    about = "Closed-loop load generator for ferry's invocation API"
)]
struct Args {
    /// Invocation endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Upload endpoint (for --cold).
    #[arg(long, default_value = "http://127.0.0.1:8002")]
    upload_url: String,
    #[arg(long)]
    user: String,
    #[arg(long)]
    function: String,
    #[arg(long, default_value = "")]
    input: String,
    #[arg(long)]
    forbid_ndp: bool,
    /// Concurrent connections (one thread each).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to send, in seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up before measuring, in seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Measure first calls instead: upload this wasm under N new names and call each once.
    #[arg(long)]
    cold: Option<usize>,
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Where to write `<label>.hlog` and `<label>.txt`.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    #[arg(long, default_value = "run")]
    label: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (histogram, calls, errors, elapsed) = match args.cold {
        Some(n) => cold(&args, n)?,
        None => warm(&args)?,
    };
    report(&args, &histogram, calls, errors, elapsed)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

fn message(args: &Args, function: &str) -> String {
    serde_json::json!({
        "user": args.user, "function": function, "input_data": args.input, "forbid_ndp": args.forbid_ndp,
    })
    .to_string()
}

fn call(agent: &ureq::Agent, url: &str, body: &str) -> Result<u16> {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .context("sending the call")?;
    response.body_mut().read_to_vec()?;
    Ok(response.status().as_u16())
}

fn new_histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn warm(args: &Args) -> Result<(Histogram<u64>, u64, u64, Duration)> {
    let url = format!("{}/f/", args.url.trim_end_matches('/'));
    let body = message(args, &args.function);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..args.connections {
        let (url, body, measuring, stop, errors) = (
            url.clone(),
            body.clone(),
            measuring.clone(),
            stop.clone(),
            errors.clone(),
        );
        threads.push(std::thread::spawn(move || -> Result<Histogram<u64>> {
            let agent = agent();
            let mut histogram = new_histogram()?;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let status = call(&agent, &url, &body);
                let micros = started.elapsed().as_micros() as u64;
                if measuring.load(Ordering::Relaxed) {
                    match status {
                        Ok(200) => histogram.saturating_record(micros.max(1)),
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Ok(histogram)
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.duration));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut total = new_histogram()?;
    for thread in threads {
        let histogram = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        total.add(&histogram)?;
    }
    let calls = total.len();
    Ok((total, calls, errors.load(Ordering::Relaxed), elapsed))
}

fn cold(args: &Args, n: usize) -> Result<(Histogram<u64>, u64, u64, Duration)> {
    let Some(path) = &args.wasm else {
        bail!("--cold needs --wasm FILE")
    };
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let agent = agent();
    let url = format!("{}/f/", args.url.trim_end_matches('/'));
    let mut histogram = new_histogram()?;
    let mut errors = 0;
    let run = std::process::id();
    let started = Instant::now();
    for i in 0..n {
        let name = format!("{}_cold_{run}_{i}", args.function);
        let upload = format!(
            "{}/f/{}/{name}",
            args.upload_url.trim_end_matches('/'),
            args.user
        );
        let mut reply = agent.put(&upload).send(&wasm[..]).context("uploading")?;
        reply.body_mut().read_to_vec()?;
        if reply.status() != 200 {
            bail!("upload of {name} failed: HTTP {}", reply.status());
        }
        let t = Instant::now();
        let status = call(&agent, &url, &message(args, &name))?;
        let micros = t.elapsed().as_micros() as u64;
        if status == 200 {
            histogram.saturating_record(micros.max(1));
        } else {
            errors += 1;
        }
    }
    let calls = histogram.len();
    Ok((histogram, calls, errors, started.elapsed()))
}

fn report(
    args: &Args,
    histogram: &Histogram<u64>,
    calls: u64,
    errors: u64,
    elapsed: Duration,
) -> Result<()> {
    let q = |p: f64| histogram.value_at_quantile(p) as f64 / 1000.0;
    let mode = if args.cold.is_some() {
        "cold (first call after upload)"
    } else {
        "warm"
    };
    let summary = format!(
        "ferry-bench {label}: {user}/{function} {mode}, {conns} connection(s)\n\
         calls {calls} errors {errors} in {secs:.2} s = {rate:.0} calls/s\n\
         latency ms: p50 {p50:.3} p90 {p90:.3} p99 {p99:.3} p99.9 {p999:.3} max {max:.3}\n",
        label = args.label,
        user = args.user,
        function = args.function,
        conns = if args.cold.is_some() {
            1
        } else {
            args.connections
        },
        secs = elapsed.as_secs_f64(),
        rate = calls as f64 / elapsed.as_secs_f64(),
        p50 = q(0.5),
        p90 = q(0.9),
        p99 = q(0.99),
        p999 = q(0.999),
        max = histogram.max() as f64 / 1000.0,
    );
    print!("{summary}");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::write(args.out.join(format!("{}.txt", args.label)), &summary)?;
    let mut log = std::fs::File::create(args.out.join(format!("{}.hlog", args.label)))?;
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(histogram, &mut bytes)
        .map_err(|e| anyhow::anyhow!("serialising the histogram: {e:?}"))?;
    log.write_all(&bytes)?;
    Ok(())
}
