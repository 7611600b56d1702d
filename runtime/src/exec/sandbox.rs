//! The WASI context a call gets besides its arguments: Faasm's
//! environment variables (faasm/faasm `WasmEnvironment.cpp`), stdout and
//! stderr as terminals, and the filesystem.
//!
//! The filesystem a call sees, through WASI preopens (the guest's libc
//! resolves every path against the longest preopen name that prefixes it):
//!
//! | guest path | host directory | access |
//! | --- | --- | --- |
//! | `/` | the call's own directory, new per call, removed after it | read-write: the working directory (wasi-libc's cwd is `/`) |
//! | `/etc` | the node's `faasm/root/etc`: `hosts`, `passwd`, `group`, `resolv.conf` as Faasm's runtime root has them | read-only |
//! | `/tmp` | `tmp` inside the call's own directory | read-write |
//! | `faasm://` (`/faasm:`) | the user's shared files, `faasm/shared/<user digest>` on this node | read-write, kept across calls |
//!
//! wasmtime-wasi resolves guest paths with cap-std inside each preopened
//! directory: `..` past a preopen, absolute symlinks and symlinks that lead
//! out of it are refused (ENOTCAPABLE / EPERM), so no path reaches a host
//! file outside these directories.
//!
//! Only modules that import a WASI path function (`path_open`, ...) or
//! `fd_prestat_get` get the preopens: without them a module cannot name a
//! file, and a call then pays nothing for the sandbox (it cost a
//! filesystem-using call ~25-30 us of CPU: three directory opens, and the
//! check that lets an untouched call directory be reused).
//!
//! File-backed `mmap` copies the file's bytes into fresh pages, as Faasm's
//! `mmapFile` does (a private mapping: writes to the pages do not reach the
//! file).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::OutputStream;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Faasm's environment variables, in its order (a `std::map`, so sorted).
pub const FAASM_ENV: [(&str, &str); 7] = [
    ("MKL_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("PYTHONHASHSEED", "0"),
    ("PYTHONHOME", "/"),
    ("PYTHONNOUSERSITE", "on"),
    ("PYTHONWASM", "1"),
    ("PYTHON_PATH", "/"),
];

/// A call's captured stdout or stderr, reported to the guest as a terminal
/// (a character device without seek rights, what wasi-libc's `isatty`
/// asks), as Faasm's are: stdio is then line-buffered, not fully buffered.
pub struct Terminal(pub MemoryOutputPipe);

impl IsTerminal for Terminal {
    fn is_terminal(&self) -> bool {
        true
    }
}

impl StdoutStream for Terminal {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        self.0.p2_stream()
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        self.0.async_stream()
    }
}

/// Files of Faasm's runtime root that its functions read (its
/// `runtime_fs` set-up: dummy networking and user files).
const ROOT_FILES: [(&str, &str); 4] = [
    ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
    ("etc/resolv.conf", "nameserver 127.0.0.1\n"),
    (
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nfaasm:x:1000:1000:faasm:/home/faasm:/bin/sh\n",
    ),
    ("etc/group", "root:x:0:\nfaasm:x:1000:\n"),
];

/// The descriptor of the shared-files preopen (the third, see `preopen`).
pub const SHARED_FD: u32 = 5;

/// The guest name of the shared-files preopen: `faasm://x` is, to wasi-libc
/// with cwd `/`, the path `/faasm://x`, inside preopen `/faasm:`.
pub const SHARED_PREOPEN: &str = "/faasm:";

/// Call directories kept made in advance. A call that never touches the
/// filesystem hands its directory back unchanged, so steady state costs a
/// call no mkdir or rmdir at all (on this machine's disk an rmdir took
/// ~95 us and a mkdir ~28 us, against a ~0.1 ms no-op call).
const READY_DIRS: usize = 64;

/// The node's sandbox directories, under `<data>/faasm`.
pub struct Sandbox {
    etc: PathBuf,
    shared: PathBuf,
    /// Users whose shared directory exists.
    shared_made: Mutex<HashSet<String>>,
    calls: Arc<CallArea>,
}

/// Where calls' directories live, made and cleaned off the shards' threads.
struct CallArea {
    dir: PathBuf,
    next: AtomicU64,
    /// Empty call directories (each with its `tmp`), ready to hand out.
    ready: Mutex<Vec<PathBuf>>,
    /// Finished calls' directories, to check and reuse or remove.
    finished: Mutex<mpsc::Sender<PathBuf>>,
}

impl CallArea {
    /// A new empty call directory with its `tmp`.
    fn make(&self) -> std::io::Result<PathBuf> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let call = self.dir.join(format!("{n:x}"));
        std::fs::create_dir(&call)?;
        std::fs::create_dir(call.join("tmp"))?;
        Ok(call)
    }

    fn take(&self) -> std::io::Result<PathBuf> {
        let ready = self.ready.lock().ok().and_then(|mut r| r.pop());
        match ready {
            Some(call) => Ok(call),
            None => self.make(),
        }
    }

    fn give_back(&self, call: PathBuf) {
        if let Ok(mut ready) = self.ready.lock() {
            if ready.len() < READY_DIRS {
                ready.push(call);
                return;
            }
        }
        let _ = std::fs::remove_dir_all(&call);
    }

    /// The reaper: a finished call's directory that holds nothing but an
    /// empty `tmp` goes back to the ready set; any other is removed. The
    /// ready set is topped up between calls.
    fn reap(self: Arc<Self>, finished: mpsc::Receiver<PathBuf>) {
        loop {
            let low = self
                .ready
                .lock()
                .map(|r| r.len() < READY_DIRS / 2)
                .unwrap_or(false);
            let next = if low {
                finished
                    .try_recv()
                    .map_err(|e| e == mpsc::TryRecvError::Disconnected)
            } else {
                finished.recv().map_err(|_| true)
            };
            match next {
                Ok(call) => {
                    if untouched(&call) {
                        self.give_back(call);
                    } else if let Err(error) = std::fs::remove_dir_all(&call) {
                        tracing::warn!(path = %call.display(), %error, "removing a call's directory");
                    }
                }
                Err(true) => return,
                Err(false) => match self.make() {
                    Ok(call) => self.give_back(call),
                    Err(error) => {
                        tracing::warn!(%error, "making a call directory");
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                },
            }
        }
    }
}

/// Whether a call left its directory as it got it: only an empty `tmp`.
fn untouched(call: &Path) -> bool {
    let only_tmp = std::fs::read_dir(call).is_ok_and(|entries| {
        let names: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.len() == 1 && names[0] == "tmp"
    });
    only_tmp
        && std::fs::symlink_metadata(call.join("tmp")).is_ok_and(|m| m.is_dir())
        && std::fs::read_dir(call.join("tmp")).is_ok_and(|mut e| e.next().is_none())
}

impl Sandbox {
    /// Creates the root files and empties the per-call area (calls of a
    /// previous run of the node left nothing anyone reads).
    pub fn open(dir: &Path) -> Result<Sandbox> {
        let root = dir.join("root");
        for (path, contents) in ROOT_FILES {
            let path = root.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, contents)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let calls = dir.join("calls");
        if calls.exists() {
            std::fs::remove_dir_all(&calls)
                .with_context(|| format!("emptying {}", calls.display()))?;
        }
        std::fs::create_dir_all(&calls).with_context(|| format!("creating {}", calls.display()))?;
        let shared = dir.join("shared");
        std::fs::create_dir_all(&shared)
            .with_context(|| format!("creating {}", shared.display()))?;
        let (finished, reaped) = mpsc::channel::<PathBuf>();
        let area = Arc::new(CallArea {
            dir: calls,
            next: AtomicU64::new(0),
            ready: Mutex::new(Vec::with_capacity(READY_DIRS)),
            finished: Mutex::new(finished),
        });
        let reaper = area.clone();
        std::thread::Builder::new()
            .name("ferry-fs-reaper".into())
            .spawn(move || reaper.reap(reaped))
            .context("starting the call directory reaper")?;
        Ok(Sandbox {
            etc: root.join("etc"),
            shared,
            shared_made: Mutex::new(HashSet::new()),
            calls: area,
        })
    }

    /// Hands one call its directories and adds every preopen to `builder`.
    /// The directories go back when the returned guard drops.
    pub fn preopen(&self, user: &str, builder: &mut WasiCtxBuilder) -> Result<CallDirs> {
        let call = self
            .calls
            .take()
            .with_context(|| format!("making a call directory in {}", self.calls.dir.display()))?;
        let shared = self.shared.join(user_dir(user));
        let guard = CallDirs {
            path: call.clone(),
            finished: self.calls.finished.lock().ok().map(|f| f.clone()),
            shared: shared.clone(),
            etc: self.etc.clone(),
            shared_written: Vec::new(),
        };
        let made = self.shared_made.lock().is_ok_and(|m| m.contains(user));
        if !made {
            std::fs::create_dir_all(&shared)
                .with_context(|| format!("creating {}", shared.display()))?;
            if let Ok(mut m) = self.shared_made.lock() {
                m.insert(user.to_owned());
            }
        }
        // `/tmp` needs no preopen of its own: it is `tmp` inside `/`.
        // The order fixes the descriptor numbers (3, 4, 5): a zygote
        // that listed the preopens at upload sees the same ones.
        let preopens = [
            (&call, "/", FsPerms::ReadWrite),
            (&self.etc, "/etc", FsPerms::ReadOnly),
            (&shared, SHARED_PREOPEN, FsPerms::ReadWrite),
        ];
        for (host, guest, perms) in preopens {
            builder
                .preopened_dir(host, guest, perms)
                .map_err(|e| anyhow::anyhow!("preopening {guest} at {}: {e}", host.display()))?;
        }
        Ok(guard)
    }
}

/// A user's directory name: a digest, so no user name is a path.
fn user_dir(user: &str) -> String {
    hex::encode(&Sha256::digest(user.as_bytes())[..16])
}

/// One call's directory; checked and reused or removed (off the shard)
/// when dropped.
pub struct CallDirs {
    path: PathBuf,
    finished: Option<mpsc::Sender<PathBuf>>,
    /// The user's shared files on this node (`faasm://`).
    pub(crate) shared: PathBuf,
    /// The read-only root files (`/etc`).
    etc: PathBuf,
    /// Shared files (paths inside `shared`) this call opened to write:
    /// written back to the object store when it ends (host/files.rs).
    pub(crate) shared_written: Vec<String>,
}

impl CallDirs {
    /// What reads the call's files off the shard's thread.
    pub fn reader(&self) -> GuestFiles {
        GuestFiles {
            call: self.path.clone(),
            etc: self.etc.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// The directories a call's guest paths resolve in.
pub struct GuestFiles {
    call: PathBuf,
    etc: PathBuf,
    shared: PathBuf,
}

impl GuestFiles {
    /// Reads at most `max` bytes of the file a guest names by `path`, as
    /// its own `open` would resolve it: `faasm://P` in the shared files,
    /// `/etc/P` in the root files, any other path in the call's directory
    /// (its `/` and working directory). The lookup stays inside that
    /// directory (cap-primitives, as WASI's own): `..` past it, absolute
    /// symlinks and symlinks out of it fail. Err: the errno-style reason.
    pub fn read(&self, path: &str, max: u64) -> std::io::Result<Vec<u8>> {
        use std::io::Read as _;
        let (dir, inside) = if let Some(rest) = path.strip_prefix("faasm://") {
            (&self.shared, rest)
        } else if let Some(rest) = path.strip_prefix("/etc/") {
            (&self.etc, rest)
        } else {
            (&self.call, path)
        };
        let inside = inside.trim_start_matches('/');
        let start = std::fs::File::open(dir)?;
        let mut options = cap_primitives::fs::OpenOptions::new();
        options.read(true);
        let file = cap_primitives::fs::open(&start, Path::new(inside), &options)?;
        let mut bytes = Vec::new();
        file.take(max + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max {
            return Err(std::io::Error::other(format!("over {max} bytes")));
        }
        Ok(bytes)
    }
}

impl Drop for CallDirs {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        if let Some(finished) = &self.finished {
            let _ = finished.send(path);
        }
    }
}

/// Whether a module can use the filesystem at all: it imports a WASI path
/// function or the preopen listing.
pub fn uses_files(module: &wasmtime::Module) -> bool {
    module.imports().any(|import| {
        import.module() == "wasi_snapshot_preview1"
            && (import.name().starts_with("path_") || import.name() == "fd_prestat_get")
    })
}
