//! `overload`: open-loop load past a node's saturation, where the answers
//! that matter are the refusals. `ferry-bench run` times only the calls
//! that succeed and cannot see headers; this sends Faasm JSON calls at a
//! fixed rate on many keep-alive connections and records every answer's
//! latency (from the call's due time, so time spent waiting for a free
//! connection counts) by status: 200, 503 and anything else, and counts
//! the 503s that carry `Retry-After`.
//!
//! HTTP/1.1 is spoken by hand over blocking sockets (one thread per
//! connection) with the request bytes built once: next to a general
//! client that halves the load generator's CPU per call, so one core
//! offers more than a one-shard node can serve.
//!
//!   overload --url http://127.0.0.1:8080 --user test --function noop \
//!       --rate 40000 --duration 5 --connections 512 --out DIR --label L
//!
//! Writes DIR/L.json (counts, per-status percentiles in ms, the node's CPU
//! seconds over the window when --metrics is given) and DIR/L.hlog (every
//! answer's latency, one interval per second, microseconds).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Parser;
use ferry_bench::hlog::interval_log;
use hdrhistogram::Histogram;

/// 1 us to 10 minutes, 3 significant digits.
const LATENCY_US_MAX: u64 = 600_000_000;
/// Threads (one connection each) a run may start.
const CONNECTIONS_MAX: usize = 4096;
/// Calls per second one run may ask for.
const RATE_MAX: f64 = 200_000.0;
/// Bytes of response headers read before the answer is taken as broken.
const HEADER_BYTES_MAX: usize = 64 << 10;
/// Bytes of response body read; a no-op's answer is a few bytes.
const BODY_BYTES_MAX: usize = 16 << 20;

#[derive(Parser)]
#[command(
    name = "overload",
    about = "Open-loop load that records every answer (200, 503, other) and checks 503s for Retry-After"
)]
struct Args {
    /// The node's invocation endpoint, `http://HOST:PORT`.
    #[arg(long)]
    url: String,
    #[arg(long)]
    user: String,
    #[arg(long)]
    function: String,
    /// Calls sent per second, whatever the node does. Without it, closed
    /// loop: each connection sends its next call when its last one is
    /// answered (the node's saturated rate on that many connections).
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long)]
    duration: f64,
    /// Seconds of the same load before the measured window, not recorded.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Connections (threads) available to send on; a due call waits for a
    /// free one and the wait counts in its latency.
    #[arg(long, default_value_t = 512)]
    connections: usize,
    /// A call with no answer after this many seconds counts as an error.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// The node's base URL, to read `process_cpu_seconds_total` from its
    /// /metrics at the start and the end of the measured window.
    #[arg(long)]
    metrics: Option<String>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "overload")]
    label: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Ok,
    Busy {
        retry_after: bool,
    },
    Other(u16),
    /// No answer: connect, send, read or timeout failure.
    Failed,
}

struct Sample {
    due: Instant,
    /// When the call was written to its connection (at `due` or later,
    /// when no connection was free or the sender was behind).
    sent: Instant,
    answered: Instant,
    class: Class,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(rate) = args.rate {
        ensure!(
            rate.is_finite() && rate > 0.0 && rate <= RATE_MAX,
            "--rate must be more than 0 and at most {RATE_MAX}, got {rate}"
        );
    }
    ensure!(
        (1..=CONNECTIONS_MAX).contains(&args.connections),
        "--connections must be between 1 and {CONNECTIONS_MAX}, got {}",
        args.connections
    );
    ensure!(
        args.duration > 0.0 && args.warmup >= 0.0 && args.timeout > 0.0,
        "--duration and --timeout must be positive and --warmup not negative"
    );
    let host = args
        .url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--url must start with http://, got {}", args.url))?
        .trim_end_matches('/')
        .to_string();
    ensure!(
        !host.contains('/'),
        "--url takes no path (the calls go to /f/), got {}",
        args.url
    );
    let body = serde_json::json!({ "user": args.user, "function": args.function }).to_string();
    let request = Arc::new(
        format!(
            "POST /f/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    );
    let metrics_url = args.metrics.as_deref().map(|base| {
        format!(
            "{}/metrics",
            base.trim_end_matches('/').trim_end_matches("/metrics")
        )
    });
    if let Some(url) = &metrics_url {
        cpu_seconds(url).with_context(|| format!("reading {url} before the run"))?;
    }

    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let timeout = Duration::from_secs_f64(args.timeout);
    let next_call = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Sample>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let mut go = Vec::with_capacity(args.connections);
    let mut threads = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let (go_tx, go_rx) = mpsc::channel::<Instant>();
        go.push(go_tx);
        let (host, request, next_call, stop, tx, ready_tx) = (
            host.clone(),
            request.clone(),
            next_call.clone(),
            stop.clone(),
            tx.clone(),
            ready_tx.clone(),
        );
        let rate = args.rate;
        let thread = std::thread::Builder::new()
            .name(format!("overload-{i}"))
            // Each thread holds one small request and a read buffer.
            .stack_size(256 << 10)
            .spawn(move || {
                // Connect before the clock starts; a node that refuses shows
                // up as failed calls.
                let mut conn = Connection::open(&host, timeout).ok();
                let _ = ready_tx.send(());
                drop(ready_tx);
                let Ok(start) = go_rx.recv() else {
                    return;
                };
                let end = start + warmup + duration;
                loop {
                    let due = match rate {
                        Some(rate) => {
                            let i = next_call.fetch_add(1, Ordering::Relaxed);
                            start + Duration::from_secs_f64(i as f64 / rate)
                        }
                        None => Instant::now(),
                    };
                    if due >= end || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let sent = Instant::now();
                    let class = call(&mut conn, &host, &request, timeout);
                    let sample = Sample {
                        due,
                        sent,
                        answered: Instant::now(),
                        class,
                    };
                    if tx.send(sample).is_err() {
                        break;
                    }
                }
            })
            .context("starting a load thread")?;
        threads.push(thread);
    }
    drop(tx);
    drop(ready_tx);
    for _ in 0..args.connections {
        if ready_rx.recv().is_err() {
            break;
        }
    }
    let start = Instant::now();
    let window_start = start + warmup;
    let window_end = window_start + duration;
    for go_tx in go {
        let _ = go_tx.send(start);
    }
    // Reads the node's CPU seconds when the window opens and closes, and
    // its calls in flight every 100 ms between: admission counts those.
    let timekeeper = metrics_url.clone().map(|url| {
        std::thread::spawn(move || {
            sleep_until(window_start);
            let before = cpu_seconds(&url);
            let mut in_flight = Vec::new();
            while Instant::now() + IN_FLIGHT_SAMPLE_EVERY < window_end {
                std::thread::sleep(IN_FLIGHT_SAMPLE_EVERY);
                if let Ok(scrape) = ferry_bench::scrape::fetch(&url) {
                    if let Some(value) = sample(&scrape, "ferry_calls_in_flight") {
                        in_flight.push(value);
                    }
                }
            }
            sleep_until(window_end);
            (before, cpu_seconds(&url), in_flight)
        })
    });

    let mut tally = Tally::new(window_start, window_end)?;
    let collected = (|| -> Result<()> {
        for sample in rx.iter() {
            tally.add(sample)?;
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow!("a load thread panicked"))?;
    }
    collected?;
    let (cpu, in_flight) = match timekeeper {
        Some(handle) => {
            let (before, after, in_flight) = handle
                .join()
                .map_err(|_| anyhow!("the metrics thread panicked"))?;
            (Some(after? - before?), in_flight)
        }
        None => (None, Vec::new()),
    };
    let started_unix_s = (SystemTime::now() - (Instant::now() - window_start))
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let summary = tally.summary(&args, cpu, &in_flight, started_unix_s);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json_path = args.out.join(format!("{}.json", args.label));
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&summary).context("encoding the summary")? + "\n",
    )
    .with_context(|| format!("writing {}", json_path.display()))?;
    let hlog_path = args.out.join(format!("{}.hlog", args.label));
    write_hlog(&hlog_path, &args.label, started_unix_s, &tally.intervals)?;
    print_summary(&summary);
    Ok(())
}

/// One keep-alive connection and its read buffer.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(host: &str, timeout: Duration) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(host)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Connection {
            reader: BufReader::with_capacity(16 << 10, stream.try_clone()?),
            writer: stream,
        })
    }
}

/// Sends one call on `conn` (opening a connection when there is none) and
/// classifies the answer. A failed exchange drops the connection.
/// Connections opened after the first one of each thread: the node closed
/// one (`Connection: close`) or an exchange failed.
static RECONNECTS: AtomicU64 = AtomicU64::new(0);

fn call(conn: &mut Option<Connection>, host: &str, request: &[u8], timeout: Duration) -> Class {
    if conn.is_none() {
        RECONNECTS.fetch_add(1, Ordering::Relaxed);
        *conn = Connection::open(host, timeout).ok();
    }
    let Some(open) = conn.as_mut() else {
        return Class::Failed;
    };
    match exchange(open, request) {
        Ok((class, keep)) => {
            if !keep {
                *conn = None;
            }
            class
        }
        Err(_) => {
            *conn = None;
            Class::Failed
        }
    }
}

/// Writes the request and reads one answer; returns its class and whether
/// the connection may be used again.
fn exchange(conn: &mut Connection, request: &[u8]) -> Result<(Class, bool)> {
    conn.writer.write_all(request).context("sending")?;
    let mut line = String::new();
    let mut header_bytes = 0usize;
    read_line(&mut conn.reader, &mut line, &mut header_bytes)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
    let (mut length, mut chunked, mut retry_after, mut keep) = (None, false, false, true);
    loop {
        line.clear();
        read_line(&mut conn.reader, &mut line, &mut header_bytes)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            bail!("bad header line {header:?}");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("parsing Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = !value.is_empty();
        } else if name.eq_ignore_ascii_case("connection") {
            keep = !value.eq_ignore_ascii_case("close");
        }
    }
    if chunked {
        read_chunked(&mut conn.reader)?;
    } else {
        let length = length.ok_or_else(|| anyhow!("an answer with no length"))?;
        ensure!(length <= BODY_BYTES_MAX, "an answer of {length} bytes");
        skip(&mut conn.reader, length)?;
    }
    let class = match status {
        200 => Class::Ok,
        503 => Class::Busy { retry_after },
        other => Class::Other(other),
    };
    Ok((class, keep))
}

fn read_line(reader: &mut impl BufRead, line: &mut String, total: &mut usize) -> Result<()> {
    let n = reader.read_line(line).context("reading the answer")?;
    ensure!(n > 0, "the connection closed");
    *total += n;
    ensure!(
        *total <= HEADER_BYTES_MAX,
        "answer headers past {HEADER_BYTES_MAX} bytes"
    );
    Ok(())
}

fn skip(reader: &mut impl Read, n: usize) -> Result<()> {
    let copied = std::io::copy(&mut reader.take(n as u64), &mut std::io::sink())
        .context("reading the body")?;
    ensure!(
        copied == n as u64,
        "the body ended after {copied} of {n} bytes"
    );
    Ok(())
}

fn read_chunked(reader: &mut impl BufRead) -> Result<()> {
    let mut total = 0usize;
    loop {
        let mut line = String::new();
        let mut unused = 0usize;
        read_line(reader, &mut line, &mut unused)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .context("parsing a chunk size")?;
        total += size;
        ensure!(
            total <= BODY_BYTES_MAX,
            "a chunked answer past {BODY_BYTES_MAX} bytes"
        );
        skip(reader, size + 2)?;
        if size == 0 {
            return Ok(());
        }
    }
}

/// How often the node's calls in flight are read during the window.
const IN_FLIGHT_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The node's `process_cpu_seconds_total`.
fn cpu_seconds(url: &str) -> Result<f64> {
    let text = ferry_bench::scrape::fetch(url)?;
    sample(&text, "process_cpu_seconds_total")
        .ok_or_else(|| anyhow!("{url} has no process_cpu_seconds_total"))
}

/// The value of an unlabelled sample of a Prometheus text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .find_map(|rest| rest.strip_prefix(' '))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).context("creating a histogram")
}

/// Answers to calls due inside the measured window.
struct Tally {
    window_start: Instant,
    window_end: Instant,
    all: Histogram<u64>,
    /// Every answer's latency from when it was sent: what the node and
    /// the connection added, without the wait for a free connection.
    from_send: Histogram<u64>,
    ok: Histogram<u64>,
    busy: Histogram<u64>,
    /// Every answer, by the second of the window it came in.
    intervals: Vec<Histogram<u64>>,
    calls: u64,
    busy_without_retry_after: u64,
    other: u64,
    other_statuses: Vec<u16>,
    failed: u64,
    /// Answers (and 200s) that came inside the window, whenever they were
    /// due: the rate the node answered at, what its CPU seconds over the
    /// window are divided by.
    answered_in_window: u64,
    ok_answered_in_window: u64,
}

impl Tally {
    fn new(window_start: Instant, window_end: Instant) -> Result<Tally> {
        Ok(Tally {
            window_start,
            window_end,
            all: new_histogram()?,
            from_send: new_histogram()?,
            ok: new_histogram()?,
            busy: new_histogram()?,
            intervals: Vec::new(),
            calls: 0,
            busy_without_retry_after: 0,
            other: 0,
            other_statuses: Vec::new(),
            failed: 0,
            answered_in_window: 0,
            ok_answered_in_window: 0,
        })
    }

    fn add(&mut self, sample: Sample) -> Result<()> {
        if sample.class != Class::Failed
            && self.window_start <= sample.answered
            && sample.answered < self.window_end
        {
            self.answered_in_window += 1;
            if sample.class == Class::Ok {
                self.ok_answered_in_window += 1;
            }
        }
        if sample.due < self.window_start || sample.due >= self.window_end {
            return Ok(());
        }
        self.calls += 1;
        let micros = u64::try_from((sample.answered - sample.due).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let second = (sample.answered - self.window_start).as_secs() as usize;
        while self.intervals.len() <= second {
            self.intervals.push(new_histogram()?);
        }
        match sample.class {
            Class::Ok => self.ok.saturating_record(micros),
            Class::Busy { retry_after } => {
                self.busy.saturating_record(micros);
                if !retry_after {
                    self.busy_without_retry_after += 1;
                }
            }
            Class::Other(status) => {
                self.other += 1;
                if !self.other_statuses.contains(&status) {
                    self.other_statuses.push(status);
                }
            }
            Class::Failed => self.failed += 1,
        }
        if sample.class != Class::Failed {
            let on_the_wire = u64::try_from((sample.answered - sample.sent).as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            self.from_send.saturating_record(on_the_wire);
            self.all.saturating_record(micros);
            self.intervals[second].saturating_record(micros);
        }
        Ok(())
    }

    fn summary(
        &self,
        args: &Args,
        cpu_s: Option<f64>,
        in_flight: &[f64],
        started_unix_s: f64,
    ) -> serde_json::Value {
        let window_s = (self.window_end - self.window_start).as_secs_f64();
        let answered = self.all.len();
        let share = |n: u64| {
            if self.calls == 0 {
                0.0
            } else {
                n as f64 / self.calls as f64
            }
        };
        serde_json::json!({
            "label": args.label,
            "user": args.user,
            "function": args.function,
            "started_unix_s": started_unix_s,
            "target_rate": args.rate,
            "connections": args.connections,
            "duration_s": window_s,
            "calls": self.calls,
            "answered": answered,
            "ok": self.ok.len(),
            "busy_503": self.busy.len(),
            "busy_503_without_retry_after": self.busy_without_retry_after,
            "other_status": self.other,
            "other_statuses": self.other_statuses,
            "failed": self.failed,
            "ok_share": share(self.ok.len()),
            "busy_share": share(self.busy.len()),
            "mode": if args.rate.is_some() { "open" } else { "closed" },
            // 200s answered per second of the window (the rate served).
            "ok_rate": self.ok_answered_in_window as f64 / window_s,
            "answer_rate": self.answered_in_window as f64 / window_s,
            "reconnects": RECONNECTS.load(Ordering::Relaxed),
            "latency_ms": {
                "all": percentiles(&self.all),
                "all_from_send": percentiles(&self.from_send),
                "ok": percentiles(&self.ok),
                "busy_503": percentiles(&self.busy),
            },
            "node_cpu_s": cpu_s,
            "node_calls_in_flight_samples": in_flight.len(),
            "node_calls_in_flight_max": in_flight.iter().copied().fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
            "node_calls_in_flight_mean": if in_flight.is_empty() { None } else { Some(in_flight.iter().sum::<f64>() / in_flight.len() as f64) },
            "node_cpu_us_per_answer": cpu_s.map(|s| {
                if self.answered_in_window == 0 {
                    f64::NAN
                } else {
                    s / self.answered_in_window as f64 * 1e6
                }
            }),
        })
    }
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::Value::Null;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    serde_json::json!({
        "p50": ms(h.value_at_quantile(0.5)),
        "p90": ms(h.value_at_quantile(0.9)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": h.mean() / 1000.0,
    })
}

fn write_hlog(
    path: &std::path::Path,
    label: &str,
    started_unix_s: f64,
    intervals: &[Histogram<u64>],
) -> Result<()> {
    let comment =
        format!("overload {label}: every answer (200, 503, other), latency in microseconds");
    let log = interval_log(
        &comment,
        label,
        started_unix_s,
        Duration::from_secs(1),
        intervals,
    )?;
    std::fs::write(path, &log).with_context(|| format!("writing {}", path.display()))
}

fn print_summary(s: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let all = &s["latency_ms"]["all"];
    let sent = &s["latency_ms"]["all_from_send"];
    println!(
        "{}: {} calls due at {}/s on {} connections ({:.0} 200s/s): {} ok ({:.1}%), {} 503 ({:.1}%, {} without Retry-After), \
         {} other, {} failed, {} reconnects; all answers p50 {:.3} ms p99 {:.3} ms max {:.3} ms from due, \
         p50 {:.3} ms p99 {:.3} ms max {:.3} ms from send; node CPU {}, \
         calls in flight at most {}",
        s["label"].as_str().unwrap_or(""),
        s["calls"],
        s["target_rate"],
        s["connections"],
        f(&s["ok_rate"]),
        s["ok"],
        f(&s["ok_share"]) * 100.0,
        s["busy_503"],
        f(&s["busy_share"]) * 100.0,
        s["busy_503_without_retry_after"],
        s["other_status"],
        s["failed"],
        s["reconnects"],
        f(&all["p50"]),
        f(&all["p99"]),
        f(&all["max"]),
        f(&sent["p50"]),
        f(&sent["p99"]),
        f(&sent["max"]),
        match s["node_cpu_s"].as_f64() {
            Some(cpu) => format!("{cpu:.2} s"),
            None => "not read".into(),
        },
        s["node_calls_in_flight_max"],
    );
}
