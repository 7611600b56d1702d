//! ferry-bench: the load generator (`ferry-bench`) and the criterion
//! micro-benchmarks (`cargo bench -p ferry-bench`). Latencies are recorded
//! in HdrHistograms; every run writes the histogram log and a text summary.
