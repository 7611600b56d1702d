//! Criterion benchmarks of the transport, variants side by side:
//!
//! - `frame`: encode + decode of a small Offer and of 16 pages (no network);
//! - `round_trip`: one request at a time over loopback TCP, client and
//!   server on one glommio executor, for three message sizes;
//! - `payload_64mib`: a 64 MiB ObjectWrite over loopback TCP next to its
//!   baseline twin, a memcpy of the same bytes (throughput reported for both).
//!
//! Setup (executor, server, connection, payload) stays outside the timed
//! loops. Run: `cargo bench -p ferry-transport --bench transport`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_transport::limits::FRAME_BYTES_MAX;
use ferry_transport::{
    serve, testing, Connection, Frame, FrameFlags, Message, Pages, TransportConfig,
};
use glommio::net::TcpListener;
use glommio::LocalExecutor;

fn frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    let cases = [
        ("offer", Message::Offer(testing::offer(None))),
        (
            "pages_16",
            Message::Pages(Pages {
                call_id: 1,
                pages: testing::pages(16),
                more: false,
            }),
        ),
    ];
    for (name, message) in cases {
        group.bench_function(BenchmarkId::new("encode_decode", name), |b| {
            b.iter(|| {
                let bytes = Frame::encode_to_vec(1, FrameFlags::NONE, &message, FRAME_BYTES_MAX)?;
                Frame::decode_from_slice(&bytes, FRAME_BYTES_MAX)?.message()
            })
        });
    }
    group.finish();
}

/// Times `iters` sequential requests of `message` on a fresh executor with
/// a server and a connection set up beforehand.
fn time_requests(message: &Message, iters: u64) -> Duration {
    let message = message.clone();
    let executor = LocalExecutor::default();
    executor.run(async move {
        let Ok(listener) = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))) else {
            return Duration::MAX;
        };
        let Ok(addr) = listener.local_addr() else {
            return Duration::MAX;
        };
        let handler = |request: Message| async move {
            match request {
                Message::ObjectWrite { data, .. } => Message::ObjectWritten {
                    object_bytes: data.len() as u64,
                },
                other => other,
            }
        };
        let _server = glommio::spawn_local(serve(
            listener,
            TransportConfig::new("bench-server"),
            handler,
        ));
        let Ok(connection) = Connection::connect(addr, &TransportConfig::new("bench-client")).await
        else {
            return Duration::MAX;
        };
        let timeout = Duration::from_secs(10);
        if connection.request(&message, timeout).await.is_err() {
            return Duration::MAX;
        }
        let started = Instant::now();
        for _ in 0..iters {
            if connection.request(&message, timeout).await.is_err() {
                return Duration::MAX;
            }
        }
        started.elapsed()
    })
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    let cases = [
        (
            "accept",
            Message::Accept {
                call_id: 1,
                slot: 1,
            },
        ),
        ("offer", Message::Offer(testing::offer(None))),
        (
            "pages_16",
            Message::Pages(Pages {
                call_id: 1,
                pages: testing::pages(16),
                more: false,
            }),
        ),
    ];
    for (name, message) in cases {
        group.bench_function(BenchmarkId::new("tcp_loopback", name), |b| {
            b.iter_custom(|iters| time_requests(&message, iters))
        });
    }
    group.finish();
}

fn payload_64mib(c: &mut Criterion) {
    const LEN: usize = 64 << 20;
    let data = Bytes::from((0..LEN).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let mut group = c.benchmark_group("payload_64mib");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(LEN as u64));
    let write = Message::ObjectWrite {
        user: "bench".into(),
        key: b"payload".to_vec(),
        data: data.clone(),
        offset: 0,
        total_bytes: data.len() as u64,
        write_id: 0,
        store: ferry_transport::Store::Objects,
    };
    group.bench_function("tcp_loopback", |b| {
        b.iter_custom(|iters| time_requests(&write, iters))
    });
    let mut target = vec![0u8; LEN];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            target.copy_from_slice(std::hint::black_box(&data));
            std::hint::black_box(&mut target);
        })
    });
    group.finish();
}

criterion_group!(benches, frame, round_trip, payload_64mib);
criterion_main!(benches);
