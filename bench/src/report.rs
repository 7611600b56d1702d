//! What a run leaves behind: the call's message, the JSON summary (which
//! `plot` reads back), the HdrHistogram interval log and the text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::load::{Measured, Mode, Spec};
use crate::scrape::{Scrape, CPU_SECONDS};
use crate::Target;
use ferry_bench::hlog::interval_log;

/// A call's input: text goes as `input_data`, other bytes as `input_base64`.
pub enum Input {
    Text(String),
    Binary(Vec<u8>),
}

impl Input {
    pub fn from_target(target: &Target) -> Result<Input> {
        match (&target.input, &target.input_file) {
            (Some(text), _) => Ok(Input::Text(text.clone())),
            (None, Some(path)) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading --input-file {}", path.display()))?;
                Ok(match String::from_utf8(bytes) {
                    Ok(text) => Input::Text(text),
                    Err(error) => Input::Binary(error.into_bytes()),
                })
            }
            (None, None) => Ok(Input::Text(String::new())),
        }
    }

    /// Faasm's JSON invocation message for `function`.
    pub fn message(&self, target: &Target, function: &str) -> String {
        let mut message = serde_json::json!({
            "user": target.user,
            "function": function,
            "forbid_ndp": target.forbid_ndp,
        });
        match self {
            Input::Text(text) => message["input_data"] = text.clone().into(),
            Input::Binary(bytes) => {
                message["input_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into()
            }
        }
        message.to_string()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// A node's counters around the measured window.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct NodeCounters {
    pub url: String,
    pub before: BTreeMap<String, f64>,
    pub after: BTreeMap<String, f64>,
    /// after - before (a sample missing before counts from 0).
    pub delta: BTreeMap<String, f64>,
    /// delta divided by the calls of the window (successful or not).
    pub per_call: BTreeMap<String, f64>,
    /// Why the counters are missing, when /metrics could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The JSON summary of one run (LABEL.json).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Summary {
    pub label: String,
    /// The sweep this run is a point of (its --label), if any.
    pub sweep: Option<String>,
    /// `closed`, `open` or `cold`.
    pub mode: String,
    pub url: String,
    pub user: String,
    pub function: String,
    pub forbid_ndp: bool,
    pub connections: usize,
    /// Open loop: calls per second sent.
    pub target_rate: Option<f64>,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Start of the measured window, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// Successful calls (HTTP 200) measured.
    pub count: u64,
    /// Calls that failed: another status, a transport error or a timeout.
    pub errors: u64,
    /// Successful calls per second of the measured window.
    pub achieved_rate: f64,
    /// Latency of the successful calls, milliseconds.
    pub latency_ms: Latency,
    /// (quantile, latency in ms) pairs for percentile plots.
    pub percentiles: Vec<(f64, f64)>,
    pub error_samples: Vec<String>,
    pub nodes: Vec<NodeCounters>,
}

/// Quantiles listed in a summary; the tail ones only when there are
/// enough calls to mean anything.
const QUANTILES: [f64; 16] = [
    0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999,
    0.999995, 0.999999,
];

pub fn latency(histogram: &Histogram<u64>) -> Latency {
    let ms = |us: u64| us as f64 / 1000.0;
    Latency {
        p50: ms(histogram.value_at_quantile(0.5)),
        p90: ms(histogram.value_at_quantile(0.9)),
        p99: ms(histogram.value_at_quantile(0.99)),
        p999: ms(histogram.value_at_quantile(0.999)),
        max: ms(histogram.max()),
        mean: histogram.mean() / 1000.0,
    }
}

pub fn percentiles(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    let count = histogram.len() as f64;
    if count == 0.0 {
        return Vec::new();
    }
    let mut points: Vec<(f64, f64)> = QUANTILES
        .iter()
        .filter(|&&q| q == 0.0 || 1.0 / (1.0 - q) <= count)
        .map(|&q| (q, histogram.value_at_quantile(q) as f64 / 1000.0))
        .collect();
    points.push((1.0, histogram.max() as f64 / 1000.0));
    points
}

pub fn counters(url: &str, before: &Scrape, after: &Scrape, calls: u64) -> NodeCounters {
    // A labelled counter appears on /metrics with its first increment, so
    // one missing before the window started at 0.
    let delta: BTreeMap<String, f64> = after
        .iter()
        .map(|(name, value)| (name.clone(), value - before.get(name).unwrap_or(&0.0)))
        .collect();
    let per_call = delta
        .iter()
        .map(|(name, value)| (name.clone(), value / calls.max(1) as f64))
        .collect();
    NodeCounters {
        url: url.to_string(),
        before: before.clone(),
        after: after.clone(),
        delta,
        per_call,
        error: None,
    }
}

/// A node whose /metrics could not be read.
pub fn unread(url: &str, error: &str) -> NodeCounters {
    NodeCounters {
        url: url.to_string(),
        before: BTreeMap::new(),
        after: BTreeMap::new(),
        delta: BTreeMap::new(),
        per_call: BTreeMap::new(),
        error: Some(error.to_string()),
    }
}

impl Summary {
    pub fn new(
        target: &Target,
        spec: &Spec,
        measured: &Measured,
        label: &str,
        sweep: Option<&str>,
    ) -> Summary {
        let (mode, target_rate) = match spec.mode {
            Mode::Closed { .. } => ("closed", None),
            Mode::Open { rate, .. } => ("open", Some(rate)),
        };
        let count = measured.total.len();
        Summary {
            label: label.to_string(),
            sweep: sweep.map(str::to_string),
            mode: mode.to_string(),
            url: spec.url.clone(),
            user: target.user.clone(),
            function: target.function.clone(),
            forbid_ndp: target.forbid_ndp,
            connections: spec.mode.connections(),
            target_rate,
            duration_s: measured.window.as_secs_f64(),
            warmup_s: spec.warmup.as_secs_f64(),
            started_unix_s: measured
                .started
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            count,
            errors: measured.errors,
            achieved_rate: count as f64 / measured.window.as_secs_f64(),
            latency_ms: latency(&measured.total),
            percentiles: percentiles(&measured.total),
            error_samples: measured.error_samples.clone(),
            nodes: spec
                .metrics
                .iter()
                .zip(&measured.scrapes)
                .map(|(url, scraped)| match scraped {
                    Ok((before, after)) => counters(url, before, after, measured.calls),
                    Err(error) => unread(url, error),
                })
                .collect(),
        }
    }
}

/// Writes DIR/LABEL.json, DIR/LABEL.hlog (one interval per histogram,
/// each a second long) and DIR/LABEL.txt.
pub fn write(dir: &Path, label: &str, summary: &Summary, measured: &Measured) -> Result<()> {
    write_files(
        dir,
        label,
        summary,
        &measured.intervals,
        Duration::from_secs(1),
    )
}

pub fn write_files(
    dir: &Path,
    label: &str,
    summary: &Summary,
    intervals: &[Histogram<u64>],
    interval: Duration,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = |ext: &str| dir.join(format!("{label}.{ext}"));
    let json = serde_json::to_string_pretty(summary).context("encoding the summary")?;
    std::fs::write(path("json"), json + "\n")
        .with_context(|| format!("writing {}", path("json").display()))?;
    std::fs::write(path("txt"), table(summary))
        .with_context(|| format!("writing {}", path("txt").display()))?;

    let how = match summary.mode.as_str() {
        "cold" => "first calls after upload",
        "open" => "open loop",
        _ => "closed loop",
    };
    let comment = format!(
        "ferry-bench {label}: {}/{} {how}, latency in microseconds",
        summary.user, summary.function
    );
    let log = interval_log(&comment, label, summary.started_unix_s, interval, intervals)?;
    std::fs::write(path("hlog"), &log)
        .with_context(|| format!("writing {}", path("hlog").display()))?;
    Ok(())
}

/// The text table printed after a run and written as LABEL.txt. Its first
/// three lines keep one shape (`calls N errors N in S s = R calls/s`,
/// `latency ms: p50 X ...`) that scripts read.
pub fn table(summary: &Summary) -> String {
    let mut out = String::new();
    let how = match (summary.mode.as_str(), summary.target_rate) {
        ("open", Some(rate)) => format!(
            "open loop at {rate} calls/s on up to {} connection(s)",
            summary.connections
        ),
        ("cold", _) => "cold (first call after upload)".to_string(),
        _ => format!("closed loop, {} connection(s)", summary.connections),
    };
    let ndp = if summary.forbid_ndp {
        ", forbid_ndp"
    } else {
        ""
    };
    let l = &summary.latency_ms;
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "ferry-bench {}: {}/{} {how}{ndp}",
        summary.label, summary.user, summary.function
    );
    let _ = writeln!(
        out,
        "calls {} errors {} in {:.2} s = {:.1} calls/s",
        summary.count, summary.errors, summary.duration_s, summary.achieved_rate
    );
    let _ = writeln!(
        out,
        "latency ms: p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3} mean {:.3}",
        l.p50, l.p90, l.p99, l.p999, l.max, l.mean
    );
    for reason in &summary.error_samples {
        let _ = writeln!(out, "error: {reason}");
    }
    if !summary.nodes.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<24} {:>14} {:>14} {:>14}  counter",
            "node", "delta", "per call", "after"
        );
    }
    for node in &summary.nodes {
        if let Some(error) = &node.error {
            let _ = writeln!(
                out,
                "{:<24} (metrics not read: {error})",
                node_name(&node.url)
            );
            continue;
        }
        for (name, delta) in &node.delta {
            // The counters that did not move say nothing about this run,
            // except the CPU time, which is always shown.
            if *delta == 0.0 && name != CPU_SECONDS {
                continue;
            }
            let _ = writeln!(
                out,
                "{:<24} {:>14} {:>14} {:>14}  {name}",
                node_name(&node.url),
                number(*delta),
                number(node.per_call.get(name).copied().unwrap_or(0.0)),
                number(node.after.get(name).copied().unwrap_or(0.0)),
            );
        }
        if !node.after.contains_key(CPU_SECONDS) {
            let _ = writeln!(
                out,
                "{:<24} ({CPU_SECONDS} not exposed by this node)",
                node_name(&node.url)
            );
        }
    }
    out
}

/// A node's host:port, from its /metrics URL.
fn node_name(url: &str) -> &str {
    let url = url.trim_end_matches("/metrics");
    url.split_once("://").map(|(_, rest)| rest).unwrap_or(url)
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn percentiles_stop_where_the_calls_run_out() -> Result<()> {
        let mut h = crate::load::new_histogram()?;
        for us in 1..=1000u64 {
            h.record(us * 10)?;
        }
        let points = percentiles(&h);
        assert_eq!(points.first().map(|p| p.0), Some(0.0));
        assert_eq!(points.last().map(|p| p.0), Some(1.0));
        // 1000 calls: nothing past p99.9 but the max.
        assert!(points.iter().all(|&(q, _)| q <= 0.999 || q == 1.0));
        assert!(points.windows(2).all(|w| w[0].1 <= w[1].1));
        let l = latency(&h);
        assert!((l.p50 - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.max - 10.0).abs() < 0.01, "{l:?}");
        Ok(())
    }

    fn summary(label: &str) -> Summary {
        Summary {
            label: label.into(),
            sweep: None,
            mode: "open".into(),
            url: "http://n/f/".into(),
            user: "u".into(),
            function: "f".into(),
            forbid_ndp: false,
            connections: 1,
            target_rate: Some(10.0),
            duration_s: 3.0,
            warmup_s: 0.0,
            started_unix_s: 1_700_000_000.5,
            count: 0,
            errors: 0,
            achieved_rate: 0.0,
            latency_ms: latency(&Histogram::new(3).expect("a histogram")),
            percentiles: Vec::new(),
            error_samples: Vec::new(),
            nodes: Vec::new(),
        }
    }

    #[test]
    fn the_interval_log_reads_back_one_histogram_per_second() -> Result<()> {
        use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
        use hdrhistogram::serialization::Deserializer;

        let mut intervals = Vec::new();
        for second in 0..3u64 {
            let mut h = crate::load::new_histogram()?;
            for i in 0..=second {
                h.record(1000 * (i + 1))?;
            }
            intervals.push(h);
        }
        let dir = std::env::temp_dir().join(format!("ferry-bench-test-{}", std::process::id()));
        let s = summary("log");
        write_files(&dir, "log", &s, &intervals, Duration::from_secs(1))?;
        let log = std::fs::read(dir.join("log.hlog"))?;
        let back: Summary = serde_json::from_slice(&std::fs::read(dir.join("log.json"))?)?;
        let text = std::fs::read_to_string(dir.join("log.txt"))?;
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(back.label, "log");
        assert!(text.contains("calls 0 errors 0 in 3.00 s"), "{text}");

        let mut seen = Vec::new();
        let mut start_time = None;
        for entry in IntervalLogIterator::new(&log) {
            match entry.map_err(|e| anyhow!("parsing the log: {e:?}"))? {
                LogEntry::StartTime(t) => start_time = Some(t),
                LogEntry::BaseTime(_) => {}
                LogEntry::Interval(interval) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(interval.encoded_histogram())?;
                    let h: Histogram<u64> = Deserializer::new()
                        .deserialize(&mut &bytes[..])
                        .map_err(|e| anyhow!("decoding an interval: {e:?}"))?;
                    assert_eq!(interval.tag().map(|t| t.as_str()), Some("log"));
                    seen.push((
                        interval.start_timestamp(),
                        interval.duration(),
                        h.len(),
                        h.max(),
                    ));
                }
            }
        }
        assert_eq!(start_time, Some(Duration::from_millis(1_700_000_000_500)));
        assert_eq!(seen.len(), 3);
        for (second, (start, duration, count, max)) in seen.into_iter().enumerate() {
            assert_eq!(start, Duration::from_secs(second as u64));
            assert_eq!(duration, Duration::from_secs(1));
            assert_eq!(count, second as u64 + 1);
            assert_eq!(max, intervals[second].max());
        }
        Ok(())
    }

    #[test]
    fn counters_report_deltas_per_call() {
        let before = Scrape::from([
            ("a_total".to_string(), 10.0),
            (CPU_SECONDS.to_string(), 1.0),
        ]);
        let after = Scrape::from([
            ("a_total".to_string(), 30.0),
            (CPU_SECONDS.to_string(), 3.0),
            ("new_total".to_string(), 5.0),
        ]);
        let c = counters("u", &before, &after, 4);
        assert_eq!(c.delta.get("a_total"), Some(&20.0));
        assert_eq!(c.per_call.get("a_total"), Some(&5.0));
        assert_eq!(c.per_call.get(CPU_SECONDS), Some(&0.5));
        assert_eq!(c.delta.get("new_total"), Some(&5.0));
    }
}
