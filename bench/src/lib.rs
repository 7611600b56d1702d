//! ferry-bench: the benchmark tools (`ferry-bench run|sweep|plot|cold|transport`,
//! the binary in `main.rs`) and the criterion micro-benchmarks (`cargo
//! bench -p ferry-bench`). Latencies are recorded in HdrHistograms; every
//! run writes the histogram log, a JSON summary and a text table.

pub mod hlog;
pub mod scrape;
