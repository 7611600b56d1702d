//! The load generator: threads that each hold one keep-alive HTTP/1.1
//! connection and send the same Faasm JSON message, closed loop (the next
//! call when the last one answers) or open loop (calls due at a fixed
//! rate, latency counted from the due time), and a collector that bins
//! every measured latency into one HdrHistogram per second.
//!
//! Open loop, coordinated omission: call i is due at `start + i / rate`.
//! A thread takes the next due call when it is free, sleeps until it is
//! due (or sends at once when it is already late) and records `answered -
//! due`, so time a call spent waiting for a free connection, because the
//! node was slow with earlier calls, counts in its latency instead of
//! vanishing from the record.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, ensure, Context, Result};
use hdrhistogram::Histogram;

use crate::scrape::{self, Scrape};

/// Latencies are recorded in microseconds, 1 us to 10 minutes, 3
/// significant digits (~0.1% error).
pub const LATENCY_US_MAX: u64 = 600_000_000;

/// Open-loop rates above this would need more than one thread's worth of
/// scheduling precision per call (~10 us).
const RATE_MAX: f64 = 100_000.0;
/// Threads (one connection each) a run may start.
const CONNECTIONS_MAX: usize = 4096;

pub fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).context("creating a histogram")
}

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    Closed { connections: usize },
    Open { rate: f64, max_in_flight: usize },
}

impl Mode {
    pub fn check(&self) -> Result<()> {
        match *self {
            Mode::Closed { connections } => ensure!(
                (1..=CONNECTIONS_MAX).contains(&connections),
                "--concurrency must be between 1 and {CONNECTIONS_MAX}, got {connections}"
            ),
            Mode::Open {
                rate,
                max_in_flight,
            } => {
                ensure!(
                    rate.is_finite() && rate > 0.0 && rate <= RATE_MAX,
                    "--rate must be more than 0 and at most {RATE_MAX} calls/s, got {rate}"
                );
                ensure!(
                    (1..=CONNECTIONS_MAX).contains(&max_in_flight),
                    "--max-in-flight must be between 1 and {CONNECTIONS_MAX}, got {max_in_flight}"
                );
            }
        }
        Ok(())
    }

    pub fn connections(&self) -> usize {
        match *self {
            Mode::Closed { connections } => connections,
            // No more threads than calls due in a second (but a few, so
            // one slow call does not hold up the next): a slow rate needs
            // few connections.
            Mode::Open {
                rate,
                max_in_flight,
            } => max_in_flight.min((rate.ceil() as usize).max(4)),
        }
    }
}

pub struct Spec {
    pub url: String,
    pub body: String,
    pub mode: Mode,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    /// /metrics URLs read at the start and the end of the measured window.
    pub metrics: Vec<String>,
    pub label: String,
}

/// What a run measured.
pub struct Measured {
    /// The start of the measured window, as wall-clock time (the hlog's
    /// start time).
    pub started: SystemTime,
    /// One histogram per second of the measured window and the drain after
    /// it (by when each call was answered).
    pub intervals: Vec<Histogram<u64>>,
    /// All successful calls.
    pub total: Histogram<u64>,
    /// Calls due (open loop) or sent (closed loop) in the measured window.
    pub calls: u64,
    pub errors: u64,
    /// The first few distinct reasons calls failed.
    pub error_samples: Vec<String>,
    /// The measured window.
    pub window: Duration,
    /// Before and after, one per `Spec::metrics`.
    /// A node whose /metrics could not be read at either end has the
    /// reason instead: the run's own results stand without it.
    pub scrapes: Vec<std::result::Result<(Scrape, Scrape), String>>,
}

/// One finished call.
struct Sample {
    /// When it was due (open loop) or sent (closed loop).
    due: Instant,
    answered: Instant,
    outcome: std::result::Result<(), String>,
}

const ERROR_SAMPLES_MAX: usize = 5;

pub fn run(spec: &Spec) -> Result<Measured> {
    spec.mode.check()?;
    // A /metrics URL that does not answer fails the run before any load,
    // not after it.
    for url in &spec.metrics {
        scrape::scrape(url)?;
    }
    let agent_config = || {
        ureq::Agent::config_builder()
            // Benchmark traffic goes straight to the node, never through
            // a proxy named in the environment.
            .proxy(None)
            .http_status_as_error(false)
            .timeout_global(Some(spec.timeout))
            .build()
    };
    let connections = spec.mode.connections();
    let stop = Arc::new(AtomicBool::new(false));
    let next_call = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<Sample>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (warmup, duration) = (spec.warmup, spec.duration);
    let health_url = format!("{}/healthz", origin(&spec.url));

    let mut threads = Vec::with_capacity(connections);
    let mut go = Vec::with_capacity(connections);
    for i in 0..connections {
        let (url, body, stop, next_call, tx, ready_tx, health_url) = (
            spec.url.clone(),
            spec.body.clone(),
            stop.clone(),
            next_call.clone(),
            tx.clone(),
            ready_tx.clone(),
            health_url.clone(),
        );
        let (go_tx, go_rx) = mpsc::channel::<Instant>();
        go.push(go_tx);
        let agent: ureq::Agent = agent_config().into();
        let mode = spec.mode;
        let thread = std::thread::Builder::new()
            .name(format!("load-{i}"))
            .spawn(move || {
                // Open this thread's connection before the clock starts, so
                // no measured call pays for a TCP handshake. A node that
                // does not answer shows up as errors in the run itself.
                if let Ok(mut response) = agent.get(&health_url).call() {
                    let _ = response.body_mut().read_to_vec();
                }
                let _ = ready_tx.send(());
                drop(ready_tx);
                let Ok(start) = go_rx.recv() else {
                    return;
                };
                let window_end = start + warmup + duration;
                let send = |due: Instant| {
                    let outcome = call(&agent, &url, &body);
                    // The collector gone means the run is over.
                    tx.send(Sample {
                        due,
                        answered: Instant::now(),
                        outcome,
                    })
                    .is_ok()
                };
                match mode {
                    Mode::Closed { .. } => {
                        while !stop.load(Ordering::Relaxed) {
                            if !send(Instant::now()) {
                                break;
                            }
                        }
                    }
                    Mode::Open { rate, .. } => loop {
                        let i = next_call.fetch_add(1, Ordering::Relaxed);
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        if due >= window_end || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        if !send(due) {
                            break;
                        }
                    },
                }
            })
            .context("starting a load thread")?;
        threads.push(thread);
    }
    drop(tx);
    drop(ready_tx);
    // Every thread has its connection (or gave up on it); then the clock
    // starts for all of them at once.
    for _ in 0..connections {
        if ready_rx.recv().is_err() {
            break;
        }
    }
    let start = Instant::now();
    let window_start = start + spec.warmup;
    let window_end = window_start + spec.duration;
    for go_tx in go {
        // A thread that already exited has nothing to start.
        let _ = go_tx.send(start);
    }

    let progress = progress_bar(spec);
    let collector = Collector::new(window_start, window_end)?;
    let metrics_urls = spec.metrics.clone();
    // The collector runs here; a helper thread keeps time: it reads the
    // nodes' metrics when the window opens and stops closed-loop senders
    // when it closes.
    let timekeeper = {
        let stop = stop.clone();
        let closed = matches!(spec.mode, Mode::Closed { .. });
        std::thread::Builder::new()
            .name("timekeeper".into())
            .spawn(move || -> (SystemTime, Vec<Result<Scrape>>) {
                sleep_until(window_start);
                let started = SystemTime::now();
                let before = metrics_urls.iter().map(|url| scrape::scrape(url)).collect();
                sleep_until(window_end);
                if closed {
                    stop.store(true, Ordering::Relaxed);
                }
                (started, before)
            })
            .context("starting the timekeeper thread")?
    };
    let collected = collector.collect(rx, progress.as_ref(), start);
    // Whatever happened, the senders must stop before we return.
    stop.store(true, Ordering::Relaxed);
    let timed = timekeeper
        .join()
        .map_err(|_| anyhow!("the timekeeper thread panicked"))?;
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow!("a load thread panicked"))?;
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    let mut collected = collected?;
    let (started, before) = timed;
    let mut scrapes = Vec::with_capacity(before.len());
    for (url, before) in spec.metrics.iter().zip(before) {
        let pair = before.and_then(|before| Ok((before, scrape::scrape(url)?)));
        if let Err(error) = &pair {
            eprintln!("ferry-bench: the counters of {url} are left out: {error:#}");
        }
        scrapes.push(pair.map_err(|error| format!("{error:#}")));
    }
    collected.intervals.truncate(collected.last_interval + 1);
    Ok(Measured {
        started,
        intervals: collected.intervals,
        total: collected.total,
        calls: collected.calls,
        errors: collected.errors,
        error_samples: collected.error_samples,
        window: spec.duration,
        scrapes,
    })
}

/// One call: Ok on HTTP 200, else why not.
fn call(agent: &ureq::Agent, url: &str, body: &str) -> std::result::Result<(), String> {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .map_err(|error| format!("sending: {error}"))?;
    let status = response.status().as_u16();
    let reply = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .map_err(|error| format!("reading the answer: {error}"))?;
    if status == 200 {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&reply);
        let first_line = text.lines().next().unwrap_or("").chars().take(200);
        Err(format!("HTTP {status}: {}", first_line.collect::<String>()))
    }
}

/// `scheme://host:port` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(slash) => &url[..after_scheme + slash],
        None => url,
    }
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

fn progress_bar(spec: &Spec) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let total_ms = (spec.warmup + spec.duration).as_millis() as u64;
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total_ms),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {elapsed_precise} {percent:>3}% {msg}",
    )
    .map(|style| style.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(spec.label.clone());
    bar.set_message("warming up");
    Some(bar)
}

/// Bins samples into per-second histograms; counts only calls due (or
/// sent) inside the measured window.
struct Collector {
    window_start: Instant,
    window_end: Instant,
    intervals: Vec<Histogram<u64>>,
    last_interval: usize,
    total: Histogram<u64>,
    calls: u64,
    errors: u64,
    error_samples: Vec<String>,
}

impl Collector {
    fn new(window_start: Instant, window_end: Instant) -> Result<Collector> {
        Ok(Collector {
            window_start,
            window_end,
            intervals: Vec::new(),
            last_interval: 0,
            total: new_histogram()?,
            calls: 0,
            errors: 0,
            error_samples: Vec::new(),
        })
    }

    fn collect(
        mut self,
        rx: mpsc::Receiver<Sample>,
        progress: Option<&indicatif::ProgressBar>,
        start: Instant,
    ) -> Result<Collector> {
        // Every second of the window gets an interval, even an empty one.
        let seconds = (self.window_end - self.window_start).as_secs_f64().ceil() as usize;
        for _ in 0..seconds.max(1) {
            self.intervals.push(new_histogram()?);
        }
        self.last_interval = seconds.max(1) - 1;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(sample) => self.add(sample)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if let Some(bar) = progress {
                let now = Instant::now();
                bar.set_position((now - start).as_millis() as u64);
                if now >= self.window_start {
                    bar.set_message(format!("{} calls, {} errors", self.calls, self.errors));
                }
            }
        }
        Ok(self)
    }

    fn add(&mut self, sample: Sample) -> Result<()> {
        if sample.due < self.window_start || sample.due >= self.window_end {
            return Ok(());
        }
        self.calls += 1;
        match sample.outcome {
            Ok(()) => {
                let micros = (sample.answered - sample.due).as_micros();
                let micros = u64::try_from(micros).unwrap_or(u64::MAX).max(1);
                let second = (sample.answered - self.window_start).as_secs() as usize;
                while self.intervals.len() <= second {
                    self.intervals.push(new_histogram()?);
                }
                self.last_interval = self.last_interval.max(second);
                self.intervals[second].saturating_record(micros);
                self.total.saturating_record(micros);
            }
            Err(reason) => {
                self.errors += 1;
                if self.error_samples.len() < ERROR_SAMPLES_MAX
                    && !self.error_samples.contains(&reason)
                {
                    self.error_samples.push(reason);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(due: Instant, after_ms: u64, ok: bool) -> Sample {
        Sample {
            due,
            answered: due + Duration::from_millis(after_ms),
            outcome: if ok {
                Ok(())
            } else {
                Err("HTTP 500: x".into())
            },
        }
    }

    #[test]
    fn only_calls_due_inside_the_window_count_and_bin_by_answer() -> Result<()> {
        let start = Instant::now();
        let window_start = start + Duration::from_secs(1);
        let window_end = window_start + Duration::from_secs(2);
        let mut c = Collector::new(window_start, window_end)?;
        c.intervals = vec![new_histogram()?, new_histogram()?];
        c.add(sample(start, 5, true))?; // warm-up: ignored
        c.add(sample(window_start, 5, true))?; // second 0
        c.add(sample(window_start + Duration::from_millis(990), 20, true))?; // answered in second 1
        c.add(sample(
            window_start + Duration::from_millis(1500),
            1700,
            true,
        ))?; // answered in second 3
        c.add(sample(window_start + Duration::from_millis(1600), 1, false))?;
        c.add(sample(window_end, 1, true))?; // after the window: ignored
        assert_eq!(c.calls, 4);
        assert_eq!(c.errors, 1);
        assert_eq!(c.total.len(), 3);
        assert_eq!(c.intervals.len(), 4);
        assert_eq!(
            c.intervals.iter().map(|h| h.len()).collect::<Vec<_>>(),
            [1, 1, 0, 1]
        );
        assert_eq!(c.error_samples, ["HTTP 500: x"]);
        // The late call is charged from its due time: 1.7 s.
        assert!(c.total.max() >= 1_699_000);
        Ok(())
    }

    #[test]
    fn origins() {
        assert_eq!(origin("http://a:80/f/"), "http://a:80");
        assert_eq!(origin("http://a:80"), "http://a:80");
    }

    #[test]
    fn slow_open_loops_start_few_threads() {
        let open = |rate| Mode::Open {
            rate,
            max_in_flight: 64,
        };
        assert_eq!(open(1.0).connections(), 4);
        assert_eq!(open(10.0).connections(), 10);
        assert_eq!(open(1000.0).connections(), 64);
        assert!(open(0.0).check().is_err());
        assert!(Mode::Closed { connections: 0 }.check().is_err());
    }
}

/// The load generator against a real HTTP server on loopback whose first
/// call stalls: open loop must charge the calls queued behind the stall.
#[cfg(test)]
mod stall_tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// Answers every request 200 `OK` on keep-alive connections; the first
    /// POST waits `stall` first.
    fn serve(stall: Duration) -> Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stalled = Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let stalled = stalled.clone();
                std::thread::spawn(move || answer(stream, stall, &stalled));
            }
        });
        Ok(format!("http://{addr}/f/"))
    }

    fn answer(stream: TcpStream, stall: Duration, stalled: &AtomicBool) -> Option<()> {
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut writer = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let post = line.starts_with("POST");
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).ok()?;
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().ok()?;
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).ok()?;
            if post && !stalled.swap(true, Ordering::SeqCst) {
                std::thread::sleep(stall);
            }
            writer
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                .ok()?;
        }
    }

    fn spec(url: String, mode: Mode) -> Spec {
        Spec {
            url,
            body: "{}".into(),
            mode,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(10),
            metrics: Vec::new(),
            label: "stall".into(),
        }
    }

    #[test]
    fn open_loop_charges_the_calls_queued_behind_a_stall() -> Result<()> {
        // 100 calls/s on one connection; the first call takes 500 ms, so
        // the ~50 calls due meanwhile wait, and each must count its wait.
        let url = serve(Duration::from_millis(500))?;
        let measured = run(&spec(
            url,
            Mode::Open {
                rate: 100.0,
                max_in_flight: 1,
            },
        ))?;
        assert_eq!(measured.errors, 0);
        assert!(
            (99..=101).contains(&measured.total.len()),
            "{} calls",
            measured.total.len()
        );
        assert!(
            measured.total.max() >= 490_000,
            "max {} us",
            measured.total.max()
        );
        // Call k (due at 10k ms, k < 50) was sent when the stall ended, so
        // it waited ~500 - 10k ms: about 40 calls over 100 ms, where a
        // closed loop (or an open loop timed from the send) records one.
        let slow = measured.total.count_between(100_000, LATENCY_US_MAX);
        assert!((35..=45).contains(&slow), "{slow} calls over 100 ms");
        let p75 = measured.total.value_at_quantile(0.75);
        assert!(p75 >= 200_000, "p75 {p75} us");
        Ok(())
    }

    #[test]
    fn closed_loop_times_each_call_from_its_send() -> Result<()> {
        let url = serve(Duration::from_millis(300))?;
        let measured = run(&spec(url, Mode::Closed { connections: 1 }))?;
        assert_eq!(measured.errors, 0);
        assert!(measured.total.len() > 10, "{} calls", measured.total.len());
        assert!(measured.total.max() >= 290_000);
        // Only the stalled call was slow.
        assert!(measured.total.value_at_quantile(0.5) < 100_000);
        // One interval per second of the window, at least.
        assert!(!measured.intervals.is_empty());
        Ok(())
    }
}
