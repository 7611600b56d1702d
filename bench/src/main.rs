//! `ferry-bench`: the command line of ferry's benchmark tools. Load against
//! a node's invocation API (`run`, `sweep`, `cold`), plots of what those
//! wrote (`plot`), the transport's own round-trip and throughput
//! benchmark (`transport`), and the floor of an HTTP call, a bare hyper
//! server that runs no wasm (`floor`). Each subcommand lives in its own
//! module; this file parses arguments and hands over.

mod cold;
mod floor;
mod load;
mod plot;
mod report;
mod transport;

use ferry_bench::scrape;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry-bench",
    about = "Benchmarks for ferry: HTTP load against a node, plots, and the transport",
    long_about = "Benchmarks for ferry.\n\n\
        `run` sends one function's calls to a node for a fixed time, either closed loop \
        (--concurrency N: N connections, each sending its next call when the last one \
        answers) or open loop (--rate R: calls sent at R per second whatever the node \
        does, each call's latency measured from the time it was due to be sent, so a \
        node that stalls is charged for every call it held up; coordinated omission \
        corrected). `sweep` runs one open-loop point per rate. Every run writes under \
        --out: LABEL.hlog (HdrHistogram interval log, one interval per second, values \
        in microseconds), LABEL.json (summary: percentiles, count, errors, achieved \
        rate and, with --metrics, the nodes' counters before and after and per call) \
        and LABEL.txt (the same as a table, also printed). `plot` draws latency \
        percentile curves, or latency against rate for sweeps, from those directories \
        into one SVG. `cold` measures first calls after upload; `transport` benchmarks \
        the node-to-node transport on loopback; `floor` serves a bare HTTP/1.1 200 on \
        one thread, the baseline a no-op call is compared with.",
    after_help = "Examples:\n  \
        ferry-bench run --user test --function noop --concurrency 4 --duration 10 --out results --label noop-c4\n  \
        ferry-bench run --user test --function noop --rate 1000 --duration 10 --out results --label noop-r1000\n  \
        ferry-bench sweep --user ndp --function wordcount --input key --rates 1,10,30,100 --duration 10 --out results/wc --label ndp\n  \
        ferry-bench plot results/wc results/wc-forbid --out wc.svg\n  \
        ferry-bench cold --user test --function noop --wasm guests/out/tests/test/noop.wasm --calls 200 --out results\n  \
        ferry-bench transport --out target/transport-bench\n  \
        taskset -c 0 ferry-bench floor --port 8090 &  ferry-bench run --url http://127.0.0.1:8090 --user test --function noop --concurrency 16 --duration 5 --out results --label floor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Closed- or open-loop load for a fixed time; writes LABEL.{hlog,json,txt}.
    Run(RunArgs),
    /// One open-loop run per rate; writes LABEL-rR.{hlog,json,txt} for each rate R.
    Sweep(SweepArgs),
    /// Latency percentile curves (or latency against rate for sweeps) as one SVG.
    Plot(plot::PlotArgs),
    /// First calls: upload the wasm under N new names and call each once.
    Cold(cold::ColdArgs),
    /// The node-to-node transport on loopback: small round trips and a large payload.
    Transport(transport::TransportArgs),
    /// A bare hyper HTTP/1.1 server on one thread answering 200 to any
    /// request: the floor a no-op call is measured against. Runs until killed.
    Floor(floor::FloorArgs),
}

/// What every load run needs: where, which function, what input, how long,
/// where the results go.
#[derive(Args, Clone)]
pub struct Target {
    /// The node's invocation endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The function's user (Faasm's `user`).
    #[arg(long)]
    pub user: String,
    /// The function to call (Faasm's `function`).
    #[arg(long)]
    pub function: String,
    /// The call's input, as a string (`input_data`).
    #[arg(long, conflicts_with = "input_file")]
    pub input: Option<String>,
    /// The call's input from a file: `input_data` if it is UTF-8, else `input_base64`.
    #[arg(long)]
    pub input_file: Option<PathBuf>,
    /// Run every funclet on the node that took the call (the baseline).
    #[arg(long)]
    pub forbid_ndp: bool,
    /// Nodes whose /metrics to read before and after the measured window
    /// (a node's base URL, or its /metrics URL); repeatable.
    #[arg(long, num_args = 1..)]
    pub metrics: Vec<String>,
    /// Directory for the results (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Name of this run: the stem of its result files.
    #[arg(long, default_value = "run")]
    pub label: String,
}

#[derive(Args)]
struct Timing {
    /// Measured time, in seconds (or with a unit: 500ms, 10s, 2m).
    #[arg(long, value_parser = parse_duration)]
    duration: Duration,
    /// Load before the measured time, not recorded.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Per-call timeout; a call that takes longer counts as an error.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    timeout: Duration,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Closed loop: this many connections, each sending its next call when
    /// its last one is answered.
    #[arg(
        long,
        visible_alias = "connections",
        conflicts_with = "rate",
        required_unless_present = "rate"
    )]
    concurrency: Option<usize>,
    /// Open loop: calls sent at this many per second, latency measured from
    /// each call's due time.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: connections available to send on. When all are busy, due
    /// calls wait for one, and the wait counts in their latency.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    #[command(flatten)]
    timing: Timing,
}

#[derive(Args)]
struct SweepArgs {
    #[command(flatten)]
    target: Target,
    /// The rates, calls per second, comma separated (e.g. 1,10,30,100,300).
    #[arg(long, value_delimiter = ',', required = true)]
    rates: Vec<f64>,
    /// Connections available to send on at each rate (see `run --max-in-flight`).
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    #[command(flatten)]
    timing: Timing,
}

/// A duration in seconds (`2.5`) or with a unit (`500ms`, `10s`, `2m`).
fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .with_context(|| format!("'{text}' is not a duration (e.g. 10, 10s, 500ms, 2m)"))?;
    ensure!(
        value.is_finite() && value >= 0.0,
        "'{text}': a duration is a finite number >= 0"
    );
    Duration::try_from_secs_f64(value * scale).with_context(|| format!("'{text}' is too long"))
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            let mode = match (args.concurrency, args.rate) {
                (Some(connections), None) => load::Mode::Closed { connections },
                (None, Some(rate)) => load::Mode::Open {
                    rate,
                    max_in_flight: args.max_in_flight,
                },
                _ => bail!("give one of --concurrency N (closed loop) or --rate R (open loop)"),
            };
            run_one(&args.target, &args.timing, mode, &args.target.label, None).map(|_| ())
        }
        Command::Sweep(args) => {
            for &rate in &args.rates {
                let label = format!("{}-r{}", args.target.label, rate_name(rate));
                let mode = load::Mode::Open {
                    rate,
                    max_in_flight: args.max_in_flight,
                };
                run_one(
                    &args.target,
                    &args.timing,
                    mode,
                    &label,
                    Some(&args.target.label),
                )?;
            }
            Ok(())
        }
        Command::Plot(args) => plot::plot(&args),
        Command::Cold(args) => cold::cold(&args),
        Command::Transport(args) => transport::run(&args),
        Command::Floor(args) => floor::run(&args),
    }
}

/// A rate as it appears in a file name: `30`, `2.5`.
fn rate_name(rate: f64) -> String {
    let text = format!("{rate}");
    text.replace('.', "_")
}

/// One measured run: load, scrape the nodes around the measured window,
/// write and print the results.
fn run_one(
    target: &Target,
    timing: &Timing,
    mode: load::Mode,
    label: &str,
    sweep: Option<&str>,
) -> Result<report::Summary> {
    mode.check()?;
    ensure!(
        timing.duration > Duration::ZERO,
        "--duration must be more than 0"
    );
    let input = report::Input::from_target(target)?;
    let spec = load::Spec {
        url: invocation_url(&target.url),
        body: input.message(target, &target.function),
        mode,
        duration: timing.duration,
        warmup: timing.warmup,
        timeout: timing.timeout,
        metrics: target
            .metrics
            .iter()
            .map(|url| scrape::metrics_url(url))
            .collect(),
        label: label.to_string(),
    };
    let measured = load::run(&spec)?;
    let summary = report::Summary::new(target, &spec, &measured, label, sweep);
    report::write(&target.out, label, &summary, &measured)?;
    print!("{}", report::table(&summary));
    ensure!(
        summary.count > 0,
        "{label}: no call succeeded ({} failed){}",
        summary.errors,
        summary
            .error_samples
            .first()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default()
    );
    Ok(summary)
}

/// The invocation URL of a node given as `http://host:port` (with or
/// without a path): Faasm's `/f/` when no path is given.
fn invocation_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let has_path = trimmed
        .split_once("://")
        .map(|(_, rest)| rest.contains('/'))
        .unwrap_or(false);
    if has_path {
        url.to_string()
    } else {
        format!("{trimmed}/f/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() -> Result<()> {
        for (text, expected) in [
            ("10", Duration::from_secs(10)),
            ("2.5", Duration::from_millis(2500)),
            ("500ms", Duration::from_millis(500)),
            ("3s", Duration::from_secs(3)),
            ("2m", Duration::from_secs(120)),
            ("250us", Duration::from_micros(250)),
        ] {
            assert_eq!(parse_duration(text)?, expected, "{text}");
        }
        for bad in ["", "x", "-1", "1h", "nan"] {
            assert!(parse_duration(bad).is_err(), "{bad} parsed");
        }
        Ok(())
    }

    #[test]
    fn invocation_urls_get_faasm_path_only_without_one() {
        assert_eq!(invocation_url("http://a:8080"), "http://a:8080/f/");
        assert_eq!(invocation_url("http://a:8080/"), "http://a:8080/f/");
        assert_eq!(invocation_url("http://a:8080/f/"), "http://a:8080/f/");
        assert_eq!(invocation_url("http://a:8080/x"), "http://a:8080/x");
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
