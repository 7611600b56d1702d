//! HdrHistogram interval logs (`.hlog`): one histogram of latencies in
//! microseconds per interval, as `ferry-bench run` and `overload` write
//! them and `ferry-bench plot` (and HdrHistogram's own tools) read them.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::Histogram;

/// The log of `intervals` (histograms of microseconds, each `interval`
/// long, the first starting at `started_unix_s`), tagged `label`, with
/// `comment` at its head. Values are reported in milliseconds (a max value
/// divisor of 1000), as HdrHistogram's plotters expect.
pub fn interval_log(
    comment: &str,
    label: &str,
    started_unix_s: f64,
    interval: Duration,
    intervals: &[Histogram<u64>],
) -> Result<Vec<u8>> {
    let started = UNIX_EPOCH + Duration::from_secs_f64(started_unix_s.max(0.0));
    let mut log = Vec::new();
    let mut serializer = V2Serializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment(comment)
        .with_start_time(started)
        .with_base_time(started)
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut log, &mut serializer)
        .context("starting the interval log")?;
    let tag = Tag::new(label);
    for (i, histogram) in intervals.iter().enumerate() {
        writer
            .write_histogram(histogram, interval * i as u32, interval, tag)
            .map_err(|error| anyhow!("writing interval {i} of the log: {error:?}"))?;
    }
    Ok(log)
}
