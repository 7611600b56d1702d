//! Reading a node's Prometheus /metrics: the counters a run reports before
//! and after its measured window. Kept: `process_cpu_seconds_total` (the
//! node's CPU time) and every `ferry_..._total` counter (funclets run
//! here, offloads by result, offload bytes by direction, transport
//! requests served by kind).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};

/// One node's counters at one moment: sample (name with labels) -> value.
pub type Scrape = BTreeMap<String, f64>;

/// The CPU seconds sample.
pub const CPU_SECONDS: &str = "process_cpu_seconds_total";

/// The /metrics URL of a node given by its base URL or its /metrics URL.
pub fn metrics_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/metrics") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/metrics")
    }
}

/// A node's counters now (the samples [`parse`] keeps).
pub fn scrape(url: &str) -> Result<Scrape> {
    Ok(parse(&fetch(url)?))
}

/// The text of a node's /metrics at `url`.
pub fn fetch(url: &str) -> Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // Benchmark traffic goes straight to the node, never through
        // a proxy named in the environment.
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let text = agent
        .get(url)
        .call()
        .with_context(|| format!("reading {url}"))?
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the body of {url}"))?;
    Ok(text)
}

/// The kept samples of a Prometheus text exposition; lines that are not
/// samples, or whose value does not parse, are skipped.
pub fn parse(text: &str) -> Scrape {
    let mut samples = Scrape::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `name{labels} value [timestamp]`; label values may hold spaces,
        // so split after the closing brace when there is one.
        let (sample, rest) = match line.rfind('}') {
            Some(end) => (&line[..=end], &line[end + 1..]),
            None => match line.split_once(char::is_whitespace) {
                Some((name, rest)) => (name, rest),
                None => continue,
            },
        };
        let name = sample.split('{').next().unwrap_or("");
        let kept = name == CPU_SECONDS || (name.starts_with("ferry_") && name.ends_with("_total"));
        if !kept {
            continue;
        }
        let Some(value) = rest.split_whitespace().next() else {
            continue;
        };
        if let Ok(value) = value.parse::<f64>() {
            samples.insert(sample.to_string(), value);
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_cpu_and_ferry_counters_only() {
        let text = "# HELP x\n# TYPE ferry_offloads_total counter\n\
            ferry_offloads_total{result=\"accepted\"} 12\n\
            ferry_offload_bytes_total{direction=\"sent\"} 4096\n\
            ferry_call_duration_seconds_bucket{le=\"0.1\"} 3\n\
            ferry_calls_in_flight 1\n\
            process_cpu_seconds_total 1.25\n\
            ferry_funclets_local_total 7 1700000000\n\
            ferry_calls_total{user=\"a b\",function=\"f\",outcome=\"ok\"} 5\n\
            garbage\n";
        let s = parse(text);
        assert_eq!(
            s.get("ferry_offloads_total{result=\"accepted\"}"),
            Some(&12.0)
        );
        assert_eq!(
            s.get("ferry_offload_bytes_total{direction=\"sent\"}"),
            Some(&4096.0)
        );
        assert_eq!(s.get(CPU_SECONDS), Some(&1.25));
        assert_eq!(s.get("ferry_funclets_local_total"), Some(&7.0));
        assert_eq!(
            s.get("ferry_calls_total{user=\"a b\",function=\"f\",outcome=\"ok\"}"),
            Some(&5.0)
        );
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn metrics_urls() {
        assert_eq!(metrics_url("http://a:8080"), "http://a:8080/metrics");
        assert_eq!(metrics_url("http://a:8080/"), "http://a:8080/metrics");
        assert_eq!(
            metrics_url("http://a:8080/metrics"),
            "http://a:8080/metrics"
        );
    }
}
