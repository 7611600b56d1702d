//! `ferry-bench transport`: the node-to-node transport on loopback, two
//! glommio executors pinned to two cores (a server and a client):
//!
//! - round-trip time of a small request (an Accept, ~100 bytes framed), one
//!   in flight at a time: p50, p99, p99.9, max;
//! - throughput of a large payload (an ObjectWrite of `--payload-mib` MiB
//!   answered by a small ObjectWritten), against a plain memcpy of the same
//!   bytes in the same run, and their ratio.
//!
//! Writes `rtt.hlog` (HdrHistogram interval log, nanoseconds) and
//! `summary.txt` into `--out`, and prints the summary.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use bytes::Bytes;
use ferry_transport::{serve, Connection, Message, TransportConfig};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::Histogram;

#[derive(clap::Args)]
pub struct TransportArgs {
    /// Small requests to time (plus a tenth as many for warm-up).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    rtt_requests: u64,
    /// Large payloads to time.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    payload_rounds: u32,
    /// Size of the large payload, MiB (1 to 64; one frame, under the
    /// transport's 128 MiB frame limit).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=64))]
    payload_mib: u64,
    /// Core the server executor is pinned to.
    #[arg(long, default_value_t = 1)]
    server_core: usize,
    /// Core the client executor is pinned to.
    #[arg(long, default_value_t = 0)]
    client_core: usize,
    /// Directory for rtt.hlog and summary.txt.
    #[arg(long, default_value = "target/transport-bench")]
    out: PathBuf,
    /// Microseconds each executor spins for work before it parks (glommio's
    /// spin_before_park; a node's `spin_us`). 0: park at once, as a node
    /// does by default.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    spin_us: u64,
}

/// What the client shard measured.
struct Measured {
    rtt_ns: Histogram<u64>,
    rtt_started: SystemTime,
    rtt_elapsed: Duration,
    payload_ns: Vec<u64>,
    memcpy_ns: Vec<u64>,
}

pub fn run(options: &TransportArgs) -> anyhow::Result<()> {
    let payload_mib = usize::try_from(options.payload_mib)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();

    let server_stop = stop.clone();
    let spin = Duration::from_micros(options.spin_us);
    let server = LocalExecutorBuilder::new(Placement::Fixed(options.server_core))
        .name("bench-server")
        .spin_before_park(spin)
        .spawn(move || async move {
            let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .map_err(std::io::Error::from)
                .context("binding 127.0.0.1:0")?;
            addr_tx.send(listener.local_addr().map_err(std::io::Error::from)?)?;
            let handler = |request: Message| async move {
                match request {
                    Message::ObjectWrite { data, .. } => Message::ObjectWritten {
                        object_bytes: data.len() as u64,
                    },
                    other => other,
                }
            };
            let serving = async {
                serve(listener, TransportConfig::new("bench-server"), handler)
                    .await
                    .map_err(anyhow::Error::from)
            };
            let stopping = async {
                while !server_stop.load(Ordering::Relaxed) {
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                }
                Ok(())
            };
            futures_lite::future::or(serving, stopping).await
        })
        .map_err(std::io::Error::from)
        .context("starting the server shard")?;
    let addr = addr_rx.recv().context("waiting for the server's address")?;

    let client_options = (options.rtt_requests, options.payload_rounds, payload_mib);
    let client = LocalExecutorBuilder::new(Placement::Fixed(options.client_core))
        .name("bench-client")
        .spin_before_park(spin)
        .spawn(move || async move { measure(addr, client_options).await })
        .map_err(std::io::Error::from)
        .context("starting the client shard")?;
    let measured = client.join().map_err(std::io::Error::from)?;
    stop.store(true, Ordering::Relaxed);
    server.join().map_err(std::io::Error::from)??;
    let measured = measured?;
    report(options, &measured)
}

async fn measure(
    addr: SocketAddr,
    (rtt_requests, payload_rounds, payload_mib): (u64, u32, usize),
) -> anyhow::Result<Measured> {
    let connection = Connection::connect(addr, &TransportConfig::new("bench-client")).await?;
    let timeout = Duration::from_secs(10);

    // Small-message round trips, one in flight.
    let mut rtt_ns = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
    let small = |i: u64| Message::Accept {
        call_id: i,
        slot: i as u32,
    };
    for i in 0..rtt_requests / 10 {
        connection.request(&small(i), timeout).await?; // warm-up
    }
    let rtt_started = SystemTime::now();
    let began = Instant::now();
    for i in 0..rtt_requests {
        let request = small(i);
        let sent = Instant::now();
        let answer = connection.request(&request, timeout).await?;
        rtt_ns.record(sent.elapsed().as_nanos() as u64)?;
        if answer != request {
            bail!("round trip {i} came back as {answer:?}");
        }
    }
    let rtt_elapsed = began.elapsed();

    // 64 MiB payloads, and a memcpy of the same bytes, alternating so both
    // see the same machine.
    let len = payload_mib << 20;
    let data = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let mut copy_target = vec![0u8; len];
    let write = Message::ObjectWrite {
        user: "bench".into(),
        key: b"payload".to_vec(),
        data: data.clone(),
        offset: 0,
        total_bytes: data.len() as u64,
        write_id: 0,
        store: ferry_transport::Store::Objects,
    };
    connection.request(&write, timeout).await?; // warm-up
    let mut payload_ns = Vec::new();
    let mut memcpy_ns = Vec::new();
    for _ in 0..payload_rounds {
        let sent = Instant::now();
        let answer = connection.request(&write, timeout).await?;
        payload_ns.push(sent.elapsed().as_nanos() as u64);
        if answer
            != (Message::ObjectWritten {
                object_bytes: len as u64,
            })
        {
            bail!("payload answered with {answer:?}");
        }
        let copied = Instant::now();
        copy_target.copy_from_slice(std::hint::black_box(&data));
        std::hint::black_box(&mut copy_target);
        memcpy_ns.push(copied.elapsed().as_nanos() as u64);
    }
    Ok(Measured {
        rtt_ns,
        rtt_started,
        rtt_elapsed,
        payload_ns,
        memcpy_ns,
    })
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

fn report(options: &TransportArgs, measured: &Measured) -> anyhow::Result<()> {
    let rtt = &measured.rtt_ns;
    let us = |ns: u64| ns as f64 / 1_000.0;
    let bytes = (options.payload_mib << 20) as f64;
    let gib_per_s = |ns: u64| bytes / (ns as f64 / 1e9) / f64::from(1u32 << 30);
    let (payload, memcpy) = (median(&measured.payload_ns), median(&measured.memcpy_ns));
    let mut summary = String::new();
    writeln!(
        summary,
        "ferry-bench transport: loopback TCP, server on core {}, client on core {}, executors spin {} us before parking",
        options.server_core, options.client_core, options.spin_us
    )?;
    writeln!(
        summary,
        "small request round trip ({} requests, one in flight, {:.0} req/s): p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
        rtt.len(),
        rtt.len() as f64 / measured.rtt_elapsed.as_secs_f64(),
        us(rtt.value_at_quantile(0.50)),
        us(rtt.value_at_quantile(0.99)),
        us(rtt.value_at_quantile(0.999)),
        us(rtt.max()),
    )?;
    writeln!(
        summary,
        "{} MiB payload ({} rounds, median): transport {:.2} ms = {:.2} GiB/s; memcpy {:.2} ms = {:.2} GiB/s; transport/memcpy throughput ratio {:.3}",
        options.payload_mib,
        measured.payload_ns.len(),
        payload as f64 / 1e6,
        gib_per_s(payload),
        memcpy as f64 / 1e6,
        gib_per_s(memcpy),
        memcpy as f64 / payload as f64,
    )?;
    print!("{summary}");

    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    std::fs::write(options.out.join("summary.txt"), &summary).context("writing summary.txt")?;
    let mut log = Vec::new();
    let mut serializer = V2Serializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("ferry-bench transport small request round trip, nanoseconds")
        .with_start_time(measured.rtt_started)
        .begin_log_with(&mut log, &mut serializer)?;
    writer
        .write_histogram(rtt, Duration::ZERO, measured.rtt_elapsed, None)
        .map_err(|error| anyhow::anyhow!("writing the histogram log: {error:?}"))?;
    std::fs::write(options.out.join("rtt.hlog"), &log).context("writing rtt.hlog")?;
    println!("wrote {}", options.out.display());
    Ok(())
}
