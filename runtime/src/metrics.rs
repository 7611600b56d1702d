//! Prometheus counters and histograms, rendered at `GET /metrics`.

use anyhow::Result;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Calls by user, function and outcome (`ok`, `error`, `failed`, `busy`).
    pub calls: IntCounterVec,
    pub call_seconds: HistogramVec,
    pub calls_in_flight: IntGauge,
    pub uploads: IntCounterVec,
    /// Funclets run on this node (in place, or from a compute node).
    pub funclets_local: IntCounter,
    /// Funclets run here for another node's calls, by how they ended
    /// (`done`, `trapped`, `deadline`: the offering node stopped waiting or
    /// the call limit passed, `refused`).
    pub funclets_ended: IntCounterVec,
    /// Offloads by result (`accepted`, `declined`, `failed`).
    pub offloads: IntCounterVec,
    /// Snapshot bytes shipped for offloads, by direction (`sent`, `received`).
    pub offload_bytes: IntCounterVec,
    /// Requests from other nodes served over the transport, by message kind.
    pub peer_requests: IntCounterVec,
    /// Funclets run on this node for its own calls, by why they ran here
    /// (`forbid_ndp`, `holds_object`, `fallback`).
    pub funclets_here: IntCounterVec,
    /// `funclets_here` by reason, resolved once: a label lookup takes the
    /// metric's lock, which every shard shares, and this is counted for
    /// every funclet a node runs for its own calls.
    pub funclets_here_by_reason: [IntCounter; 3],
    /// Offers from other nodes, by what this node did (`accepted`,
    /// `declined`, `abandoned`: accepted but the pages never came).
    pub offers: IntCounterVec,
    /// Offload round trips (Offer to applied Done) of accepted offloads.
    pub offload_seconds: prometheus::Histogram,
    /// Modules sent to other nodes, by outcome (`ok`, `refused`, `failed`).
    pub module_pushes: IntCounterVec,
    /// Requests whose handling panicked (answered 500; the shard serves on).
    pub panics: IntCounter,
    /// Shards that stopped (the node exits when one does).
    pub shards_stopped: IntCounter,
    /// HTTP body bytes requests hold now, and the node's cap on them
    /// (set at each scrape from the node's budget).
    pub http_buffer_bytes: IntGauge,
    pub http_buffer_bytes_max: IntGauge,
}

/// One function's call counters and latency histogram, resolved once so a
/// call touches only atomics (a label lookup takes the metric's lock, which
/// every shard shares).
pub struct FunctionMetrics {
    ok: IntCounter,
    error: IntCounter,
    failed: IntCounter,
    pub seconds: prometheus::Histogram,
}

impl FunctionMetrics {
    /// The counter for an outcome: `ok`, `error` (non-zero return) or
    /// `failed` (trap, deadline, memory cap).
    pub fn outcome(&self, failed: bool, return_code: i32) -> &IntCounter {
        match (failed, return_code) {
            (true, _) => &self.failed,
            (false, 0) => &self.ok,
            (false, _) => &self.error,
        }
    }
}

impl Metrics {
    pub fn function(&self, user: &str, function: &str) -> FunctionMetrics {
        let counter = |outcome| self.calls.with_label_values(&[user, function, outcome]);
        FunctionMetrics {
            ok: counter("ok"),
            error: counter("error"),
            failed: counter("failed"),
            seconds: self.call_seconds.with_label_values(&[user, function]),
        }
    }

    /// `epoch_ticks`: the executor's ticker counts its own ticks; the node
    /// reports them with the rest.
    pub fn new(epoch_ticks: &IntCounter) -> Result<Metrics> {
        let registry = Registry::new();
        registry.register(Box::new(epoch_ticks.clone()))?;
        let calls = IntCounterVec::new(
            Opts::new("ferry_calls_total", "Calls by user, function and outcome"),
            &["user", "function", "outcome"],
        )?;
        let call_seconds = HistogramVec::new(
            HistogramOpts::new(
                "ferry_call_duration_seconds",
                "Call latency from admission to result",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["user", "function"],
        )?;
        let calls_in_flight = IntGauge::new("ferry_calls_in_flight", "Calls running now")?;
        let uploads = IntCounterVec::new(
            Opts::new("ferry_uploads_total", "Function uploads by outcome"),
            &["outcome"],
        )?;
        let funclets_local =
            IntCounter::new("ferry_funclets_local_total", "Funclets run on this node")?;
        let funclets_ended = IntCounterVec::new(
            Opts::new(
                "ferry_funclets_ended_total",
                "Funclets run here for other nodes' calls, by how they ended",
            ),
            &["outcome"],
        )?;
        for outcome in ["done", "trapped", "deadline", "refused"] {
            funclets_ended.with_label_values(&[outcome]);
        }
        let offloads = IntCounterVec::new(
            Opts::new("ferry_offloads_total", "Funclet offloads by result"),
            &["result"],
        )?;
        let offload_bytes = IntCounterVec::new(
            Opts::new(
                "ferry_offload_bytes_total",
                "Snapshot bytes shipped for offloads",
            ),
            &["direction"],
        )?;
        let peer_requests = IntCounterVec::new(
            Opts::new(
                "ferry_peer_requests_total",
                "Transport requests served, by kind",
            ),
            &["kind"],
        )?;
        let funclets_here = IntCounterVec::new(
            Opts::new(
                "ferry_funclets_here_total",
                "Funclets of this node's calls run on this node, by reason",
            ),
            &["reason"],
        )?;
        let offers = IntCounterVec::new(
            Opts::new("ferry_offers_total", "Offers from other nodes, by outcome"),
            &["outcome"],
        )?;
        let offload_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "ferry_offload_duration_seconds",
                "Offload round trip, Offer to applied Done",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )?;
        let module_pushes = IntCounterVec::new(
            Opts::new(
                "ferry_module_pushes_total",
                "Modules sent to other nodes, by outcome",
            ),
            &["outcome"],
        )?;
        let panics = IntCounter::new(
            "ferry_request_panics_total",
            "Requests whose handling panicked (answered 500)",
        )?;
        let shards_stopped = IntCounter::new("ferry_shards_stopped_total", "Shards that stopped")?;
        let http_buffer_bytes = IntGauge::new(
            "ferry_http_buffer_bytes",
            "HTTP body bytes requests hold now (limits.http_buffer_bytes_max)",
        )?;
        let http_buffer_bytes_max = IntGauge::new(
            "ferry_http_buffer_bytes_max",
            "The node's cap on HTTP body bytes held at once",
        )?;
        for reason in ["forbid_ndp", "holds_object", "fallback"] {
            funclets_here.with_label_values(&[reason]);
        }
        for outcome in ["accepted", "declined", "abandoned"] {
            offers.with_label_values(&[outcome]);
        }
        for outcome in ["ok", "refused", "failed"] {
            module_pushes.with_label_values(&[outcome]);
        }
        for result in ["accepted", "declined", "failed", "trapped"] {
            offloads.with_label_values(&[result]);
        }
        for direction in ["sent", "received"] {
            offload_bytes.with_label_values(&[direction]);
        }
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(call_seconds.clone()))?;
        registry.register(Box::new(calls_in_flight.clone()))?;
        registry.register(Box::new(uploads.clone()))?;
        registry.register(Box::new(funclets_local.clone()))?;
        registry.register(Box::new(funclets_ended.clone()))?;
        registry.register(Box::new(offloads.clone()))?;
        registry.register(Box::new(offload_bytes.clone()))?;
        registry.register(Box::new(peer_requests.clone()))?;
        registry.register(Box::new(funclets_here.clone()))?;
        registry.register(Box::new(offers.clone()))?;
        registry.register(Box::new(offload_seconds.clone()))?;
        registry.register(Box::new(module_pushes.clone()))?;
        registry.register(Box::new(panics.clone()))?;
        registry.register(Box::new(shards_stopped.clone()))?;
        registry.register(Box::new(http_buffer_bytes.clone()))?;
        registry.register(Box::new(http_buffer_bytes_max.clone()))?;
        Ok(Metrics {
            registry,
            calls,
            call_seconds,
            calls_in_flight,
            uploads,
            funclets_local,
            funclets_ended,
            offloads,
            offload_bytes,
            peer_requests,
            funclets_here_by_reason: ["forbid_ndp", "holds_object", "fallback"]
                .map(|reason| funclets_here.with_label_values(&[reason])),
            funclets_here,
            offers,
            offload_seconds,
            module_pushes,
            panics,
            shards_stopped,
            http_buffer_bytes,
            http_buffer_bytes_max,
        })
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail short of a metric with a bad name,
        // which `new` would have refused.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "encoding metrics");
        }
        if let Some(seconds) = process_cpu_seconds() {
            out.extend_from_slice(
                format!(
                    "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
                     # TYPE process_cpu_seconds_total counter\n\
                     process_cpu_seconds_total {seconds}\n"
                )
                .as_bytes(),
            );
        }
        out
    }
}

/// This process's user plus system CPU time (getrusage), the sample
/// Prometheus' process collector calls `process_cpu_seconds_total`; what a
/// benchmark divides by its calls to get CPU per call.
fn process_cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage writes one `rusage` into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to that struct, RUSAGE_SELF a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}
