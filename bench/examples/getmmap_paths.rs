//! Reading an object file into wasm linear memory: what io_uring buffer
//! registration would buy and why ferry cannot register guest memory.
//!
//! Part 1, facts (each checked, not assumed; a failed check exits 1):
//!  1. A registered buffer's pages are pinned when it is registered; after
//!     `madvise(MADV_DONTNEED)` on them (what wasmtime's pooling allocator
//!     does to a slot when an instance is deallocated, unless
//!     `linear_memory_keep_resident` covers the bytes) a READ_FIXED still
//!     lands in the old, pinned pages, and the memory the program sees
//!     stays zero.
//!  2. The same with a real wasmtime pool configured like ferry's
//!     (`runtime/src/exec/mod.rs`: pooling, `memory_init_cow`, no
//!     keep-resident): register part of an instance's linear memory, drop
//!     the instance, instantiate the module again into the same slot, read
//!     with READ_FIXED: the guest does not see the bytes. With
//!     `linear_memory_keep_resident` covering the range (wasmtime then
//!     resets those bytes with memset and keeps the pages) it does; printed
//!     too: whether that still holds in the copy-on-write image's page
//!     when another module, with another image, takes the slot.
//!  3. Linear memory past the current size is PROT_NONE: registering it
//!     fails, so a pool region cannot be registered once, ahead of use.
//!  4. Registering commits and pins: RSS grows by the registered bytes,
//!     even for memory never touched; and one registered buffer is capped
//!     at 1 GiB.
//!
//! Part 2, the three ways to read SIZE bytes of a file with O_DIRECT, 1 MiB
//! reads, 4 in flight (the embedded store's IO_CHUNK_BYTES_MAX and
//! IO_CHUNKS_IN_FLIGHT_MAX), GiB/s and CPU seconds per GiB (process
//! utime + stime, all threads, so io_uring's workers too):
//!  a. glommio DMA reads into its buffers + a copy into the destination
//!     (what `storage/src/dma.rs` does for getMmap today);
//!  b. IORING_OP_READ straight into unregistered anonymous memory (the
//!     kernel pins and unpins the pages of every read);
//!  c. IORING_OP_READ_FIXED into a buffer registered once.
//! (a) and (b) are run twice: into a destination already faulted in, and
//! into a fresh mapping each read, as getMmap's freshly grown linear memory
//! is (the pool drops a slot's pages after every call).
//!
//!   cargo run --release -p ferry-bench --example getmmap_paths -- FILE [SIZE] [ROUNDS]
//!
//! FILE must be on a disk (not tmpfs) and hold at least SIZE bytes
//! (default: the whole file, at most 1 GiB); ROUNDS (3) reads of each way,
//! the median reported. Linux on x86_64 only (raw io_uring system calls).

fn main() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if let Err(error) = linux::main() {
        eprintln!("getmmap_paths: {error:#}");
        std::process::exit(1);
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        eprintln!("getmmap_paths: Linux on x86_64 only");
        std::process::exit(1);
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod linux {
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::path::Path;
    use std::time::Instant;

    use anyhow::{ensure, Context, Result};

    use super::ring::{Ring, MADV_DONTNEED};
    use super::sys;

    const O_DIRECT: i32 = 0o40000;
    /// The embedded store's read size and reads in flight.
    const CHUNK: usize = 1 << 20;
    const IN_FLIGHT: usize = 4;
    const PAGE: usize = 4096;
    const MIB: usize = 1 << 20;

    pub fn main() -> Result<()> {
        let mut args = std::env::args().skip(1);
        let path = args
            .next()
            .context("usage: getmmap_paths FILE [SIZE] [ROUNDS]")?;
        let path = Path::new(&path);
        let file_len = std::fs::metadata(path)
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len() as usize;
        let size = match args.next() {
            Some(s) => s.parse::<usize>().context("parsing SIZE")?,
            None => file_len.min(1 << 30),
        };
        let rounds = match args.next() {
            Some(s) => s.parse::<usize>().context("parsing ROUNDS")?,
            None => 3,
        };
        ensure!(size >= 8 * MIB, "SIZE must be at least 8 MiB, got {size}");
        ensure!(
            size <= file_len,
            "{} holds {file_len} bytes, less than SIZE {size}",
            path.display()
        );
        ensure!(
            size % CHUNK == 0,
            "SIZE must be a multiple of 1 MiB, got {size}"
        );
        ensure!((1..=100).contains(&rounds), "ROUNDS must be 1..=100");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_DIRECT)
            .open(path)
            .with_context(|| format!("opening {} with O_DIRECT", path.display()))?;
        // The file's first 8 MiB as the kernel's page cache path reads them,
        // to check what O_DIRECT reads land.
        let plain = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut expected = vec![0u8; 8 * MIB];
        plain
            .read_exact_at(&mut expected, 0)
            .context("reading the file's first 8 MiB")?;
        ensure!(
            expected.iter().any(|b| *b != 0),
            "the file's first 8 MiB are all zero: use a file of random bytes, so a read that \
             lands is told from one that does not"
        );

        println!("== facts");
        fact_dontneed_detaches(&file, &expected)?;
        fact_wasmtime_pool(&file, &expected)?;
        fact_registration_costs()?;

        println!(
            "\n== reading {size} bytes of {}, {rounds} round(s), medians",
            path.display()
        );
        println!("{:<62} {:>8} {:>11}", "way", "GiB/s", "CPU s/GiB");
        let gib = size as f64 / (1u64 << 30) as f64;
        let report = |name: &str, runs: &mut Vec<(f64, f64)>| {
            let wall = median(runs.iter().map(|r| r.0).collect());
            let cpu = median(runs.iter().map(|r| r.1).collect());
            println!("{name:<62} {:>8.2} {:>11.3}", gib / wall, cpu / gib);
        };
        for fresh in [false, true] {
            let dest = if fresh {
                "fresh mapping per read"
            } else {
                "faulted-in destination"
            };
            let mut a = glommio_read_copy(path, size, fresh, rounds, &expected)?;
            let mut b = Vec::new();
            let mut warm = None;
            for _ in 0..rounds {
                let mut target = destination(&mut warm, size, fresh)?;
                b.push(time(|| uring_read(&file, &mut target, size))?);
                check_landed(&target, &expected, "READ")?;
                if !fresh {
                    warm = Some(target);
                }
            }
            report(&format!("a. glommio DMA read + copy, {dest}"), &mut a);
            report(&format!("b. READ into unregistered memory, {dest}"), &mut b);
        }
        let mut c = Vec::new();
        let mut registration = Vec::new();
        for _ in 0..rounds {
            let mut region = sys::Mapping::new(size)?;
            let ring = Ring::new(8)?;
            registration.push(time(|| ring.register(region.as_mut_ptr(), size))?);
            c.push(time(|| fixed_read(&ring, &file, &mut region, size))?);
            check_landed(&region, &expected, "READ_FIXED")?;
        }
        report("c. READ_FIXED into a buffer registered once", &mut c);
        let reg_wall = median(registration.iter().map(|r| r.0).collect());
        let reg_cpu = median(registration.iter().map(|r| r.1).collect());
        println!(
            "   (registering the {size}-byte buffer once: {:.3} s, {:.3} CPU s)",
            reg_wall, reg_cpu
        );
        Ok(())
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// Runs `f`; its wall seconds and the process's CPU seconds.
    fn time(f: impl FnOnce() -> Result<()>) -> Result<(f64, f64)> {
        let c0 = sys::process_cpu_s()?;
        let t0 = Instant::now();
        f()?;
        let wall = t0.elapsed().as_secs_f64();
        Ok((wall, sys::process_cpu_s()? - c0))
    }

    fn check_landed(region: &sys::Mapping, expected: &[u8], what: &str) -> Result<()> {
        ensure!(
            region.bytes(0, expected.len()) == expected,
            "{what}: the destination does not hold the file's bytes"
        );
        Ok(())
    }

    /// Fact 1: registered pages stay pinned across MADV_DONTNEED, and the
    /// memory loses sight of them.
    fn fact_dontneed_detaches(file: &File, expected: &[u8]) -> Result<()> {
        let len = 4 * MIB;
        let mut region = sys::Mapping::new(len)?;
        let ring = Ring::new(8)?;
        ring.register(region.as_mut_ptr(), len)?;
        ring.read_fixed_all(file.as_raw_fd(), region.as_mut_ptr(), len, 0)?;
        let before = matching(region.bytes(0, len), &expected[..len]);
        region.madvise(0, len, MADV_DONTNEED)?;
        ring.read_fixed_all(file.as_raw_fd(), region.as_mut_ptr(), len, 0)?;
        let after = matching(region.bytes(0, len), &expected[..len]);
        let zero = region.bytes(0, len).iter().all(|b| *b == 0);
        println!(
            "1. READ_FIXED of {} MiB into a registered anonymous buffer: {} of {} bytes match \
             the file; after madvise(MADV_DONTNEED) and another READ_FIXED: {} match, the \
             memory is {}",
            len / MIB,
            before,
            len,
            after,
            if zero { "all zero" } else { "not all zero" }
        );
        ensure!(before == len, "fact 1: the first READ_FIXED did not land");
        ensure!(
            after < len,
            "fact 1 does not hold here: the READ_FIXED after MADV_DONTNEED landed in the memory"
        );
        Ok(())
    }

    fn matching(a: &[u8], b: &[u8]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x == y).count()
    }

    /// Fact 2: a wasmtime pool configured like ferry's.
    fn fact_wasmtime_pool(file: &File, expected: &[u8]) -> Result<()> {
        use wasmtime::{
            Config, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig, Store,
        };
        // 64 wasm pages (4 MiB); a data segment in the first page, so the
        // module has a copy-on-write image (memory_init_cow) there.
        let wat = r#"(module (memory (export "m") 64) (data (i32.const 16) "image"))"#;
        let image = 0..64 * 1024;
        let heap = MIB..4 * MIB;
        for keep_resident in [0usize, 4 * MIB] {
            let mut pool = PoolingAllocationConfig::new();
            // One slot: every instance, of either module, takes it.
            pool.total_core_instances(1)
                .total_memories(1)
                .total_tables(1)
                .max_memory_size(1 << 30)
                .linear_memory_keep_resident(keep_resident);
            let mut config = Config::new();
            config
                .memory_init_cow(true)
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            let engine =
                Engine::new(&config).map_err(|e| anyhow::anyhow!("creating the engine: {e}"))?;
            let wasm = wat::parse_str(wat).context("assembling the module")?;
            let module = Module::new(&engine, wasm)
                .map_err(|e| anyhow::anyhow!("compiling the module: {e}"))?;
            let instantiate_of = |module: &Module| -> Result<(Store<()>, wasmtime::Memory, usize)> {
                let mut store = Store::new(&engine, ());
                let instance = wasmtime::Instance::new(&mut store, module, &[])
                    .map_err(|e| anyhow::anyhow!("instantiating: {e}"))?;
                let memory = instance
                    .get_memory(&mut store, "m")
                    .context("the module exports no memory m")?;
                let base = memory.data_ptr(&store) as usize;
                Ok((store, memory, base))
            };
            let instantiate = || instantiate_of(&module);
            let ring = Ring::new(8)?;
            let (mut store, memory, base) = instantiate()?;
            for range in [&image, &heap] {
                // SAFETY: the range lies inside the instance's accessible
                // linear memory (64 pages), which stays mapped while the
                // pool exists (the engine outlives the ring's use below).
                ring.register_more(unsafe { (base as *mut u8).add(range.start) }, range.len())?;
            }
            let read_both = |ring: &Ring| -> Result<()> {
                for (index, range) in [&image, &heap].into_iter().enumerate() {
                    ring.read_fixed_indexed(
                        file.as_raw_fd(),
                        base + range.start,
                        range.len(),
                        range.start as u64,
                        index as u16,
                    )?;
                }
                Ok(())
            };
            read_both(&ring)?;
            let first = [&image, &heap].map(|r| {
                matching(&memory.data(&store)[r.clone()], &expected[r.clone()]) == r.len()
            });
            // Deallocate the instance (the pool resets its slot) and
            // instantiate again: the pool hands the module its old slot.
            drop(store);
            let (store2, memory2, base2) = instantiate()?;
            store = store2;
            ensure!(
                base2 == base,
                "fact 2: the second instance got another slot ({base2:#x}, not {base:#x})"
            );
            let reset = [&image, &heap].map(|r| {
                matching(&memory2.data(&store)[r.clone()], &expected[r.clone()]) == r.len()
            });
            read_both(&ring)?;
            let second = [&image, &heap].map(|r| {
                matching(&memory2.data(&store)[r.clone()], &expected[r.clone()]) == r.len()
            });
            println!(
                "2. wasmtime pool, memory_init_cow, linear_memory_keep_resident = {} MiB: \
                 READ_FIXED into registered linear memory lands: image page {}, heap {}; \
                 after the slot is reused by a new instance (contents reset: image {}, heap {}), \
                 READ_FIXED lands: image page {}, heap {}",
                keep_resident / MIB,
                yes(first[0]),
                yes(first[1]),
                yes(!reset[0]),
                yes(!reset[1]),
                yes(second[0]),
                yes(second[1]),
            );
            ensure!(
                first == [true, true],
                "fact 2: the first READ_FIXED did not land"
            );
            if keep_resident == 0 {
                ensure!(
                    !second[0] && !second[1],
                    "fact 2 does not hold here: with no keep-resident bytes, READ_FIXED into a \
                     reused slot landed"
                );
            } else {
                ensure!(
                    second[1],
                    "with keep-resident covering the heap range, READ_FIXED into the reused \
                     slot did not land"
                );
            }
            // Another module, with another image, takes the slot.
            drop(store);
            let other = wat::parse_str(
                r#"(module (memory (export "m") 64) (data (i32.const 16) "another image"))"#,
            )
            .context("assembling the second module")?;
            let other = Module::new(&engine, other)
                .map_err(|e| anyhow::anyhow!("compiling the second module: {e}"))?;
            let (store3, memory3, base3) = instantiate_of(&other)?;
            store = store3;
            ensure!(base3 == base, "fact 2: the second module got another slot");
            read_both(&ring)?;
            let third = [&image, &heap].map(|r| {
                matching(&memory3.data(&store)[r.clone()], &expected[r.clone()]) == r.len()
            });
            println!(
                "   then another module (another copy-on-write image) takes the slot: \
                 READ_FIXED lands: image page {}, heap {}",
                yes(third[0]),
                yes(third[1]),
            );
            // Fact 3: past the current size the slot is PROT_NONE.
            if keep_resident == 0 {
                let past = ring.register_more(
                    // SAFETY: only an address handed to the kernel, which
                    // checks it; nothing is read or written through it.
                    unsafe { (base as *mut u8).add(4 * MIB) },
                    4 * MIB,
                );
                println!(
                    "3. registering 4 MiB of the slot past the memory's current 64 pages: {}",
                    match &past {
                        Ok(()) => "accepted".to_string(),
                        Err(e) => format!("refused ({e:#})"),
                    }
                );
                ensure!(
                    past.is_err(),
                    "fact 3 does not hold here: PROT_NONE memory registered"
                );
            }
            drop(store);
        }
        Ok(())
    }

    fn yes(b: bool) -> &'static str {
        if b {
            "yes"
        } else {
            "no"
        }
    }

    /// Fact 4: registration commits and pins what it registers, and one
    /// buffer is at most 1 GiB.
    fn fact_registration_costs() -> Result<()> {
        let len = 256 * MIB;
        let mut region = sys::Mapping::new(len)?;
        let rss0 = sys::rss_bytes()?;
        let ring = Ring::new(8)?;
        ring.register(region.as_mut_ptr(), len)?;
        let rss1 = sys::rss_bytes()?;
        let big = (1 << 30) + PAGE;
        let mut huge = sys::Mapping::new(big)?;
        let over = Ring::new(8)?.register(huge.as_mut_ptr(), big);
        println!(
            "4. registering {} MiB never touched: RSS {} MiB -> {} MiB (+{} MiB, pinned until \
             unregistered); registering one buffer of 1 GiB + 4 KiB: {}",
            len / MIB,
            rss0 / MIB,
            rss1 / MIB,
            rss1.saturating_sub(rss0) / MIB,
            match &over {
                Ok(()) => "accepted".to_string(),
                Err(e) => format!("refused ({e:#})"),
            }
        );
        ensure!(
            rss1.saturating_sub(rss0) >= len * 9 / 10,
            "fact 4 does not hold here: registering did not commit the memory"
        );
        Ok(())
    }

    /// The destination of one read: a new, untouched mapping when `fresh`,
    /// else the one in `warm` (made and faulted in the first time).
    fn destination(
        warm: &mut Option<sys::Mapping>,
        size: usize,
        fresh: bool,
    ) -> Result<sys::Mapping> {
        if !fresh {
            if let Some(mapping) = warm.take() {
                return Ok(mapping);
            }
        }
        let mut mapping = sys::Mapping::new(size)?;
        if !fresh {
            mapping.fill(1);
        }
        Ok(mapping)
    }

    /// (a) glommio: DMA reads into glommio's buffers (READ_FIXED into its
    /// registered I/O memory while that has room), then a copy; `rounds`
    /// reads on one executor, each timed.
    fn glommio_read_copy(
        path: &Path,
        size: usize,
        fresh: bool,
        rounds: usize,
        expected: &[u8],
    ) -> Result<Vec<(f64, f64)>> {
        let path = path.to_path_buf();
        let expected = expected.to_vec();
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            // ferry's per-shard registered I/O memory (SHARD_IO_MEMORY_BYTES).
            .io_memory(2 << 20)
            .spawn(move || async move {
                let file = std::rc::Rc::new(
                    glommio::io::DmaFile::open(&path)
                        .await
                        .map_err(|e| anyhow::anyhow!("glommio open: {e}"))?,
                );
                let mut warm = None;
                let mut runs = Vec::new();
                for _ in 0..rounds {
                    let mut target = destination(&mut warm, size, fresh)?;
                    let c0 = sys::process_cpu_s()?;
                    let t0 = Instant::now();
                    let mut queue = std::collections::VecDeque::new();
                    let mut next = 0usize;
                    loop {
                        while next < size && queue.len() < IN_FLIGHT {
                            let (f, at) = (file.clone(), next);
                            queue.push_back(glommio::spawn_local(async move {
                                f.read_at_aligned(at as u64, CHUNK).await.map(|r| (at, r))
                            }));
                            next += CHUNK;
                        }
                        let Some(task) = queue.pop_front() else {
                            break;
                        };
                        let (at, read) = task
                            .await
                            .map_err(|e| anyhow::anyhow!("glommio read: {e}"))?;
                        ensure!(read.len() == CHUNK, "short read at {at}");
                        // SAFETY: [at, at + CHUNK) lies inside the `size`-byte
                        // mapping `target`, which nothing else touches.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(target.as_mut_ptr().add(at), CHUNK)
                        };
                        dst.copy_from_slice(&read);
                    }
                    let wall = t0.elapsed().as_secs_f64();
                    runs.push((wall, sys::process_cpu_s()? - c0));
                    check_landed(&target, &expected, "glommio read + copy")?;
                    if !fresh {
                        warm = Some(target);
                    }
                }
                let file = std::rc::Rc::try_unwrap(file)
                    .map_err(|_| anyhow::anyhow!("a read still holds the file"))?;
                file.close()
                    .await
                    .map_err(|e| anyhow::anyhow!("glommio close: {e}"))?;
                Ok::<_, anyhow::Error>(runs)
            })
            .map_err(|e| anyhow::anyhow!("starting a glommio executor: {e}"))?;
        handle
            .join()
            .map_err(|e| anyhow::anyhow!("the glommio executor failed: {e}"))?
    }

    /// (b) IORING_OP_READ into unregistered memory.
    fn uring_read(file: &File, target: &mut sys::Mapping, size: usize) -> Result<()> {
        let ring = Ring::new(8)?;
        ring.read_all(file.as_raw_fd(), target.as_mut_ptr(), size, 0, false, 0)
    }

    /// (c) IORING_OP_READ_FIXED into the registered buffer.
    fn fixed_read(ring: &Ring, file: &File, region: &mut sys::Mapping, size: usize) -> Result<()> {
        ring.read_all(file.as_raw_fd(), region.as_mut_ptr(), size, 0, true, 0)
    }
}

/// Raw system calls (no libc binding in this crate's dependencies).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod sys {
    use anyhow::{bail, Context, Result};

    pub const SYS_MMAP: usize = 9;
    pub const SYS_MUNMAP: usize = 11;
    pub const SYS_MADVISE: usize = 28;
    pub const SYS_IO_URING_SETUP: usize = 425;
    pub const SYS_IO_URING_ENTER: usize = 426;
    pub const SYS_IO_URING_REGISTER: usize = 427;
    const PROT_READ: usize = 1;
    const PROT_WRITE: usize = 2;
    const MAP_PRIVATE: usize = 0x02;
    const MAP_ANONYMOUS: usize = 0x20;
    pub const MAP_SHARED: usize = 0x01;
    pub const MAP_POPULATE: usize = 0x8000;

    /// # Safety
    /// The caller passes arguments valid for system call `n`.
    pub unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the x86_64 Linux system call convention; rcx and r11 are
        // clobbered by `syscall`; the caller vouches for the arguments.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
                in("r10") a[3], in("r8") a[4], in("r9") a[5],
                lateout("rcx") _, lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// A system call's result, or the error it returned.
    pub fn check(ret: isize, what: &str) -> Result<usize> {
        if ret < 0 {
            let error = std::io::Error::from_raw_os_error(-ret as i32);
            bail!("{what}: {error}");
        }
        Ok(ret as usize)
    }

    /// An anonymous private mapping, unmapped on drop.
    pub struct Mapping {
        ptr: *mut u8,
        len: usize,
    }

    impl Mapping {
        pub fn new(len: usize) -> Result<Mapping> {
            // SAFETY: a new anonymous mapping at an address the kernel picks.
            let ret = unsafe {
                syscall6(
                    SYS_MMAP,
                    [
                        0,
                        len,
                        PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS,
                        usize::MAX,
                        0,
                    ],
                )
            };
            let addr = check(ret, "mmap").with_context(|| format!("mapping {len} bytes"))?;
            Ok(Mapping {
                ptr: addr as *mut u8,
                len,
            })
        }

        pub fn as_mut_ptr(&mut self) -> *mut u8 {
            self.ptr
        }

        pub fn bytes(&self, start: usize, len: usize) -> &[u8] {
            assert!(start + len <= self.len);
            // SAFETY: inside the mapping, which lives as long as `self`.
            unsafe { std::slice::from_raw_parts(self.ptr.add(start), len) }
        }

        pub fn fill(&mut self, byte: u8) {
            // SAFETY: the whole mapping, borrowed mutably.
            unsafe { std::ptr::write_bytes(self.ptr, byte, self.len) };
        }

        pub fn madvise(&mut self, start: usize, len: usize, advice: usize) -> Result<()> {
            assert!(start + len <= self.len);
            // SAFETY: a range of this mapping; dropping its pages is what
            // the caller asks for.
            let ret = unsafe {
                syscall6(
                    SYS_MADVISE,
                    [self.ptr as usize + start, len, advice, 0, 0, 0],
                )
            };
            check(ret, "madvise").map(|_| ())
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, not used after this.
            unsafe { syscall6(SYS_MUNMAP, [self.ptr as usize, self.len, 0, 0, 0, 0]) };
        }
    }

    /// Maps a region of an io_uring file descriptor (its rings).
    pub fn mmap_fd(fd: i32, len: usize, offset: usize) -> Result<*mut u8> {
        // SAFETY: a new shared mapping of the ring's fd at an address the
        // kernel picks.
        let ret = unsafe {
            syscall6(
                SYS_MMAP,
                [
                    0,
                    len,
                    PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_POPULATE,
                    fd as usize,
                    offset,
                ],
            )
        };
        Ok(check(ret, "mmap of the ring")? as *mut u8)
    }

    pub fn munmap(ptr: *mut u8, len: usize) {
        // SAFETY: a mapping made by `mmap_fd`, not used after this.
        unsafe { syscall6(SYS_MUNMAP, [ptr as usize, len, 0, 0, 0, 0]) };
    }

    /// utime + stime of the whole process, seconds (clock ticks of 10 ms).
    pub fn process_cpu_s() -> Result<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
        let after = stat.rsplit_once(") ").context("parsing /proc/self/stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> Result<f64> {
            fields
                .get(i)
                .context("/proc/self/stat is short")?
                .parse::<f64>()
                .context("parsing /proc/self/stat")
        };
        // Fields 14 and 15 of stat(5), 12th and 13th after the name.
        Ok((ticks(11)? + ticks(12)?) / 100.0)
    }

    pub fn rss_bytes() -> Result<usize> {
        let status =
            std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<usize>().ok())
            .context("no VmRSS in /proc/self/status")?;
        Ok(kib * 1024)
    }
}

/// A minimal io_uring: one submitter, reads only.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod ring {
    use std::cell::{Cell, RefCell};
    use std::sync::atomic::{AtomicU32, Ordering};

    use anyhow::{ensure, Context, Result};

    use super::sys::{self, check, syscall6};

    pub const MADV_DONTNEED: usize = 4;
    const IORING_OFF_SQ_RING: usize = 0;
    const IORING_OFF_CQ_RING: usize = 0x800_0000;
    const IORING_OFF_SQES: usize = 0x1000_0000;
    const IORING_ENTER_GETEVENTS: usize = 1;
    const IORING_REGISTER_BUFFERS: usize = 0;
    const IORING_OP_READ_FIXED: u8 = 4;
    const IORING_OP_READ: u8 = 22;
    const CHUNK: usize = 1 << 20;
    const IN_FLIGHT: usize = 4;

    #[repr(C)]
    #[derive(Default)]
    struct SqOffsets {
        head: u32,
        tail: u32,
        ring_mask: u32,
        ring_entries: u32,
        flags: u32,
        dropped: u32,
        array: u32,
        resv1: u32,
        user_addr: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct CqOffsets {
        head: u32,
        tail: u32,
        ring_mask: u32,
        ring_entries: u32,
        overflow: u32,
        cqes: u32,
        flags: u32,
        resv1: u32,
        user_addr: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct Params {
        sq_entries: u32,
        cq_entries: u32,
        flags: u32,
        sq_thread_cpu: u32,
        sq_thread_idle: u32,
        features: u32,
        wq_fd: u32,
        resv: [u32; 3],
        sq_off: SqOffsets,
        cq_off: CqOffsets,
    }
    const _: () = assert!(std::mem::size_of::<Params>() == 120);

    #[repr(C)]
    struct Sqe {
        opcode: u8,
        flags: u8,
        ioprio: u16,
        fd: i32,
        off: u64,
        addr: u64,
        len: u32,
        rw_flags: u32,
        user_data: u64,
        buf_index: u16,
        personality: u16,
        splice_fd_in: i32,
        addr3: u64,
        pad: u64,
    }
    const _: () = assert!(std::mem::size_of::<Sqe>() == 64);

    #[repr(C)]
    struct Cqe {
        user_data: u64,
        res: i32,
        flags: u32,
    }

    #[repr(C)]
    struct Iovec {
        base: usize,
        len: usize,
    }

    pub struct Ring {
        fd: i32,
        sq_ptr: *mut u8,
        sq_len: usize,
        cq_ptr: *mut u8,
        cq_len: usize,
        sqes: *mut Sqe,
        sqes_len: usize,
        p: Params,
        /// Buffers registered so far (re-registered whole on each addition).
        registered: RefCell<Vec<Iovec>>,
        pending: Cell<u32>,
    }

    impl Ring {
        pub fn new(entries: u32) -> Result<Ring> {
            let mut p = Params::default();
            // SAFETY: `p` is a valid io_uring_params the kernel fills in.
            let ret = unsafe {
                syscall6(
                    sys::SYS_IO_URING_SETUP,
                    [entries as usize, &mut p as *mut Params as usize, 0, 0, 0, 0],
                )
            };
            let fd = check(ret, "io_uring_setup")? as i32;
            let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
            let cq_len =
                p.cq_off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<Cqe>();
            let sq_ptr = sys::mmap_fd(fd, sq_len, IORING_OFF_SQ_RING)?;
            let cq_ptr = sys::mmap_fd(fd, cq_len, IORING_OFF_CQ_RING)?;
            let sqes_len = p.sq_entries as usize * std::mem::size_of::<Sqe>();
            let sqes = sys::mmap_fd(fd, sqes_len, IORING_OFF_SQES)? as *mut Sqe;
            Ok(Ring {
                fd,
                sq_ptr,
                sq_len,
                cq_ptr,
                cq_len,
                sqes,
                sqes_len,
                p,
                registered: RefCell::new(Vec::new()),
                pending: Cell::new(0),
            })
        }

        fn sq_u32(&self, offset: u32) -> &AtomicU32 {
            // SAFETY: an offset the kernel gave for this ring's SQ mapping,
            // 4-byte aligned, alive while `self` is.
            unsafe { &*(self.sq_ptr.add(offset as usize) as *const AtomicU32) }
        }

        fn cq_u32(&self, offset: u32) -> &AtomicU32 {
            // SAFETY: as `sq_u32`, for the CQ mapping.
            unsafe { &*(self.cq_ptr.add(offset as usize) as *const AtomicU32) }
        }

        /// Registers one buffer (replacing any registered before).
        pub fn register(&self, ptr: *mut u8, len: usize) -> Result<()> {
            self.registered.borrow_mut().clear();
            self.register_more(ptr, len)
        }

        /// Adds a buffer to the registered ones (its index is their count
        /// before it).
        pub fn register_more(&self, ptr: *mut u8, len: usize) -> Result<()> {
            let mut all = self.registered.borrow_mut();
            if !all.is_empty() {
                // SAFETY: unregistering this ring's buffers takes no arguments.
                let ret = unsafe {
                    syscall6(
                        sys::SYS_IO_URING_REGISTER,
                        [self.fd as usize, 1, 0, 0, 0, 0],
                    )
                };
                check(ret, "unregistering buffers")?;
            }
            all.push(Iovec {
                base: ptr as usize,
                len,
            });
            if let Err(error) = check(
                self.register_all(&all),
                "io_uring_register(IORING_REGISTER_BUFFERS)",
            ) {
                all.pop();
                if !all.is_empty() {
                    // Put the earlier ones back.
                    check(
                        self.register_all(&all),
                        "registering the earlier buffers again",
                    )?;
                }
                return Err(error);
            }
            Ok(())
        }

        /// io_uring_register(IORING_REGISTER_BUFFERS) of `all`; its return.
        fn register_all(&self, all: &[Iovec]) -> isize {
            // SAFETY: an array of iovecs the kernel reads during the call;
            // it pins the memory they name or fails.
            unsafe {
                syscall6(
                    sys::SYS_IO_URING_REGISTER,
                    [
                        self.fd as usize,
                        IORING_REGISTER_BUFFERS,
                        all.as_ptr() as usize,
                        all.len(),
                        0,
                        0,
                    ],
                )
            }
        }

        fn push(&self, opcode: u8, fd: i32, addr: usize, len: usize, off: u64, buf_index: u16) {
            let mask = self.sq_u32(self.p.sq_off.ring_mask).load(Ordering::Relaxed);
            let tail = self.sq_u32(self.p.sq_off.tail).load(Ordering::Relaxed);
            let index = tail & mask;
            // SAFETY: slot `index` of the SQE array (fewer than sq_entries
            // are ever pending), and of the index array after it.
            unsafe {
                self.sqes.add(index as usize).write(Sqe {
                    opcode,
                    flags: 0,
                    ioprio: 0,
                    fd,
                    off,
                    addr: addr as u64,
                    len: len as u32,
                    rw_flags: 0,
                    user_data: addr as u64,
                    buf_index,
                    personality: 0,
                    splice_fd_in: 0,
                    addr3: 0,
                    pad: 0,
                });
                let array = self.sq_ptr.add(self.p.sq_off.array as usize) as *mut u32;
                array.add(index as usize).write(index);
            }
            self.sq_u32(self.p.sq_off.tail)
                .store(tail.wrapping_add(1), Ordering::Release);
            self.pending.set(self.pending.get() + 1);
        }

        /// Submits what is queued and waits for `wait` completions; returns
        /// their results.
        fn submit_and_wait(&self, wait: usize) -> Result<Vec<(u64, i32)>> {
            let submit = self.pending.replace(0) as usize;
            // SAFETY: io_uring_enter on this ring with no signal mask.
            let ret = unsafe {
                syscall6(
                    sys::SYS_IO_URING_ENTER,
                    [self.fd as usize, submit, wait, IORING_ENTER_GETEVENTS, 0, 0],
                )
            };
            check(ret, "io_uring_enter")?;
            let mut out = Vec::new();
            let head = self.cq_u32(self.p.cq_off.head).load(Ordering::Relaxed);
            let tail = self.cq_u32(self.p.cq_off.tail).load(Ordering::Acquire);
            let mask = self.cq_u32(self.p.cq_off.ring_mask).load(Ordering::Relaxed);
            let mut at = head;
            while at != tail {
                // SAFETY: a CQE the kernel published (between head and tail).
                let cqe = unsafe {
                    &*(self.cq_ptr.add(self.p.cq_off.cqes as usize) as *const Cqe)
                        .add((at & mask) as usize)
                };
                out.push((cqe.user_data, cqe.res));
                at = at.wrapping_add(1);
            }
            self.cq_u32(self.p.cq_off.head).store(at, Ordering::Release);
            Ok(out)
        }

        /// Reads `len` bytes at file offset `off` into `dst`, 1 MiB reads,
        /// 4 in flight; READ_FIXED from buffer `buf_index` when `fixed`.
        pub fn read_all(
            &self,
            fd: i32,
            dst: *mut u8,
            len: usize,
            off: u64,
            fixed: bool,
            buf_index: u16,
        ) -> Result<()> {
            let opcode = if fixed {
                IORING_OP_READ_FIXED
            } else {
                IORING_OP_READ
            };
            let mut next = 0usize;
            let mut in_flight = 0usize;
            while next < len || in_flight > 0 {
                while next < len && in_flight < IN_FLIGHT {
                    let n = CHUNK.min(len - next);
                    self.push(
                        opcode,
                        fd,
                        dst as usize + next,
                        n,
                        off + next as u64,
                        buf_index,
                    );
                    next += n;
                    in_flight += 1;
                }
                for (_, res) in self.submit_and_wait(1)? {
                    in_flight -= 1;
                    if res < 0 {
                        let error = std::io::Error::from_raw_os_error(-res);
                        return Err(error).context("an io_uring read");
                    }
                    ensure!(
                        res as usize > 0,
                        "an io_uring read returned 0 bytes (end of file)"
                    );
                }
            }
            Ok(())
        }

        pub fn read_fixed_all(&self, fd: i32, dst: *mut u8, len: usize, off: u64) -> Result<()> {
            self.read_all(fd, dst, len, off, true, 0)
        }

        pub fn read_fixed_indexed(
            &self,
            fd: i32,
            dst: usize,
            len: usize,
            off: u64,
            index: u16,
        ) -> Result<()> {
            self.read_all(fd, dst as *mut u8, len, off, true, index)
        }
    }

    impl Drop for Ring {
        fn drop(&mut self) {
            sys::munmap(self.sqes as *mut u8, self.sqes_len);
            sys::munmap(self.cq_ptr, self.cq_len);
            sys::munmap(self.sq_ptr, self.sq_len);
            // SAFETY: closing this ring's fd (which unpins its buffers),
            // not used after this. close is system call 3.
            unsafe { syscall6(3, [self.fd as usize, 0, 0, 0, 0, 0]) };
        }
    }
}
