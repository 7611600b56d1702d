//! What the machine offers a node: the cores it may run on (hwloc's
//! topology, the process's CPU affinity) and the prerequisites glommio
//! needs (io_uring, locked memory for its registered buffers).

use anyhow::{anyhow, bail, Context, Result};

use crate::limits;

/// One core a shard runs on.
#[derive(Debug, Clone, Copy)]
pub struct Core {
    pub cpu: usize,
    pub numa: Option<usize>,
}

/// The cores this process may run on, with their NUMA node, from hwloc.
pub fn topology(wanted: Option<usize>) -> Result<Vec<Core>> {
    use hwlocality::object::types::ObjectType;
    let topology = hwlocality::Topology::new()
        .map_err(|e| anyhow!("reading the machine topology with hwloc: {e}"))?;
    let allowed = allowed_cpus()?;
    let numa_nodes: Vec<(usize, Vec<usize>)> = topology
        .objects_with_type(ObjectType::NUMANode)
        .filter_map(|node| {
            let cpus = node.cpuset()?.iter_set().map(usize::from).collect();
            Some((node.os_index()?, cpus))
        })
        .collect();
    let mut cores: Vec<Core> = topology
        .objects_with_type(ObjectType::PU)
        .filter_map(|pu| pu.os_index())
        .filter(|cpu| allowed.contains(cpu))
        .map(|cpu| Core {
            cpu,
            numa: numa_nodes
                .iter()
                .find(|(_, cpus)| cpus.contains(&cpu))
                .map(|(n, _)| *n),
        })
        .collect();
    if cores.is_empty() {
        bail!("hwloc reports no core this process may run on");
    }
    tracing::info!(
        cores = cores.len(),
        numa_nodes = numa_nodes.len(),
        "machine topology"
    );
    if let Some(wanted) = wanted {
        if wanted > cores.len() {
            bail!(
                "--cores {wanted} asks for more cores than the {} this process may use",
                cores.len()
            );
        }
        cores.truncate(wanted);
    }
    Ok(cores)
}

fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size is the set's own.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("reading the CPU affinity mask");
    }
    // SAFETY: `set` was initialised by sched_getaffinity.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, &set) })
        .collect())
}

/// Whether this process may lock memory regardless of RLIMIT_MEMLOCK.
fn has_ipc_lock() -> Result<bool> {
    const CAP_IPC_LOCK: u32 = 14;
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    Ok(effective & (1 << CAP_IPC_LOCK) != 0)
}

/// glommio locks its I/O memory and its rings: check RLIMIT_MEMLOCK now,
/// raise it when allowed, and refuse to start with a clear message
/// otherwise, rather than failing inside the first read.
pub fn check_prerequisites(shards: usize) -> Result<()> {
    // Registered buffers plus two rings of a few hundred KiB per shard.
    let needed = (shards * (limits::SHARD_IO_MEMORY_BYTES + (1 << 20))) as u64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading RLIMIT_MEMLOCK");
    }
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < needed && !has_ipc_lock()? {
        let raised = libc::rlimit {
            rlim_cur: needed.max(limit.rlim_cur),
            rlim_max: limit.rlim_max.max(needed),
        };
        // SAFETY: setrlimit reads `raised`.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } != 0 {
            bail!(
                "locked-memory limit is {} KiB; {shards} shard(s) need {} KiB. Raise it (`ulimit -l {}`, or LimitMEMLOCK= in a systemd unit, or --ulimit memlock= in docker)",
                limit.rlim_cur / 1024,
                needed / 1024,
                needed / 1024
            );
        }
        tracing::info!(kib = needed / 1024, "raised RLIMIT_MEMLOCK");
    }
    Ok(())
}
