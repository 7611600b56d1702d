//! Instantiation of a small guest: ferry's pooling allocator with a
//! copy-on-write memory image through `InstancePre`, side by side with
//! wasmtime's on-demand allocator (the baseline twin), in the same run.

use criterion::{criterion_group, criterion_main, Criterion};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig, Store,
};

const GUEST: &str = r#"(module
    (memory (export "memory") 17)
    (data (i32.const 1024) "a zygote image of a few bytes")
    (global $sp (mut i32) (i32.const 65536))
    (func (export "_start")))"#;

fn engine(pooling: bool) -> Engine {
    let mut config = Config::new();
    config.memory_init_cow(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(16)
            .total_memories(16)
            .total_tables(16)
            .max_memory_size(1 << 30);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).expect("engine")
}

fn instantiate(c: &mut Criterion) {
    let wasm = wat::parse_str(GUEST).expect("wat");
    let mut group = c.benchmark_group("instantiate");
    for (name, pooling) in [
        ("pooling+cow+InstancePre", true),
        ("on-demand (baseline)", false),
    ] {
        let engine = engine(pooling);
        let module = Module::new(&engine, &wasm).expect("module");
        let linker: Linker<()> = Linker::new(&engine);
        let pre = linker.instantiate_pre(&module).expect("pre");
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut store = Store::new(&engine, ());
                pre.instantiate(&mut store).expect("instantiate")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, instantiate);
criterion_main!(benches);
