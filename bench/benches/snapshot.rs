//! What finding an offload's dirty pages costs: `dirty_pages` over a
//! 64 MiB linear memory against its zygote image, with 0, 1,024 (4 MiB)
//! and 16,384 (64 MiB) pages changed, beside the floor of the same run:
//! one `memcmp` of the two 64 MiB buffers (what any compare must read).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ferry_runtime::funclet::snapshot::{dirty_pages, Base};

const MEMORY_BYTES: usize = 64 << 20;
const PAGE_BYTES: usize = 4096;

fn snapshot(c: &mut Criterion) {
    let image: Vec<u8> = (0..MEMORY_BYTES / 2).map(|i| (i % 251) as u8).collect();
    let mut group = c.benchmark_group("dirty_pages_64MiB");
    group.sample_size(20);
    for dirty in [0usize, 1024, MEMORY_BYTES / PAGE_BYTES] {
        let mut memory = image.clone();
        memory.resize(MEMORY_BYTES, 0);
        let stride = (MEMORY_BYTES / PAGE_BYTES / dirty.max(1)).max(1);
        for page in (0..MEMORY_BYTES / PAGE_BYTES).step_by(stride).take(dirty) {
            memory[page * PAGE_BYTES] ^= 0xff;
        }
        group.bench_function(format!("{dirty}_dirty"), |b| {
            b.iter(|| {
                let base = Base {
                    image: &image,
                    applied: &[],
                };
                black_box(dirty_pages(black_box(&memory), &base, &[]).map(|set| set.len()))
            })
        });
    }
    let mut padded = image.clone();
    padded.resize(MEMORY_BYTES, 0);
    let copy = padded.clone();
    group.bench_function("memcmp_floor", |b| {
        b.iter(|| black_box(black_box(&padded[..]) == black_box(&copy[..])))
    });
    group.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);
