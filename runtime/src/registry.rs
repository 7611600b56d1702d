//! The registry of uploaded functions: validate, rewrite, pre-initialise,
//! compile and store at upload; load compiled artifacts by mmap at start.
//!
//! On disk, under `<data>/functions/<user>/`: each upload is a version
//! directory `<function>.v/<sha256>-<n>/` holding `module.wasm` (as
//! uploaded), `module.cwasm` (the compiled, pre-initialised module) and
//! `meta.json` (what the runtime learnt about it), written under a
//! temporary name, synced and renamed whole; then one small file,
//! `<function>.current`, naming the version, is replaced atomically. So a
//! crash leaves the old function or the new one, never a mix, and what
//! `GET /f/` returns is the module that runs. Versions no longer current
//! are removed when the registry next opens.
//!
//! Concurrent uploads of one name are ordered by a ticket taken when each
//! starts: the later ticket wins on disk and in memory alike, whichever
//! finishes compiling first.
//!
//! Lookups are lock-free (`ArcSwap`); uploads, which are rare, copy the map.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::check_name;
use crate::exec::rewrite::{self, Image};
use crate::exec::zygote::run_zygote;
use crate::exec::{Executor, Function, ModuleFacts};
use crate::limits;

/// user -> function -> compiled function; nested so a lookup borrows the
/// caller's `&str`s instead of allocating a key.
type Functions = HashMap<String, HashMap<String, Arc<Function>>>;

pub struct Registry {
    dir: PathBuf,
    functions: ArcSwap<Functions>,
    /// Taken in upload order; the highest ticket applied per name, on disk
    /// (`disk`) and in `functions` (`memory`).
    tickets: std::sync::atomic::AtomicU64,
    disk: Arc<Mutex<HashMap<(String, String), u64>>>,
    memory: Mutex<HashMap<(String, String), u64>>,
}

/// Why an upload was refused: the client's fault (400) or the node's (500).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Invalid(String),
    #[error("storing the function: {0:#}")]
    Internal(anyhow::Error),
}

#[derive(Serialize, Deserialize)]
struct Meta {
    wasm_sha256: String,
    has_table: bool,
    mutable_globals: Vec<u32>,
    exports_start: bool,
    exports_ctors: bool,
    exports_zygote: bool,
}

impl Registry {
    /// Opens the registry under `dir`, loading every stored function. Returns
    /// the functions whose artifact could not be loaded (e.g. written by
    /// another engine version), to be uploaded again from their wasm.
    pub fn open(dir: PathBuf, executor: &Executor) -> Result<(Registry, Vec<(String, String)>)> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut functions = Functions::new();
        let mut stale = Vec::new();
        for user_entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let user_dir = user_entry?.path();
            let Some(user) = user_dir
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            if check_name("user", &user).is_err() || !user_dir.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&user_dir)? {
                let path = entry?.path();
                let extension = path.extension().and_then(|e| e.to_str());
                // `.current` names a version; a `.json` beside no `.current`
                // is a function stored by an older ferry, in place.
                let legacy = extension == Some("json") && !path.with_extension("current").exists();
                if extension != Some("current") && !legacy {
                    continue;
                }
                let Some(name) = path.file_stem().and_then(|n| n.to_str()).map(str::to_owned)
                else {
                    continue;
                };
                let loaded = VersionFiles::current(&user_dir, &name).and_then(|files| {
                    let files = files.ok_or_else(|| anyhow!("no stored version"))?;
                    load(executor, &files, &user, &name)
                });
                match loaded {
                    Ok(function) => {
                        functions
                            .entry(user.clone())
                            .or_default()
                            .insert(name, Arc::new(function));
                    }
                    Err(error) => {
                        tracing::warn!(%user, function = %name, error = format!("{error:#}"), "stored artifact not loadable; recompiling from its wasm");
                        stale.push((user.clone(), name));
                    }
                }
            }
        }
        tracing::info!(functions = functions.values().map(HashMap::len).sum::<usize>(), dir = %dir.display(), "function registry loaded");
        remove_stale_versions(&dir);
        Ok((
            Registry {
                dir,
                functions: ArcSwap::from_pointee(functions),
                tickets: std::sync::atomic::AtomicU64::new(1),
                disk: Arc::new(Mutex::new(HashMap::new())),
                memory: Mutex::new(HashMap::new()),
            },
            stale,
        ))
    }

    pub fn get(&self, user: &str, name: &str) -> Option<Arc<Function>> {
        self.functions.load().get(user)?.get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.functions.load().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The wasm as uploaded, of the version that runs.
    pub fn wasm(&self, user: &str, name: &str) -> Result<Option<Vec<u8>>> {
        check_name("user", user)?;
        check_name("function", name)?;
        let Some(files) = VersionFiles::current(&self.dir.join(user), name)? else {
            return Ok(None);
        };
        let path = files.wasm;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Validates, rewrites, pre-initialises, compiles and stores a function.
    /// Runs on a shard: compiling goes to the shard's blocking thread, the
    /// zygote runs as a call on the shard.
    pub async fn upload(
        &self,
        executor: &Arc<Executor>,
        user: &str,
        name: &str,
        wasm: Vec<u8>,
    ) -> Result<Arc<Function>, UploadError> {
        let invalid = |e: anyhow::Error| UploadError::Invalid(format!("{e:#}"));
        let ticket = self
            .tickets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        check_name("user", user).map_err(invalid)?;
        check_name("function", name).map_err(invalid)?;
        if self.get(user, name).is_none() && self.len() >= limits::FUNCTIONS_MAX {
            return Err(UploadError::Invalid(format!(
                "the node holds its maximum of {} functions",
                limits::FUNCTIONS_MAX
            )));
        }
        if wasm.len() > limits::MODULE_BYTES_MAX {
            return Err(UploadError::Invalid(format!(
                "module of {} bytes exceeds the cap of {} bytes",
                wasm.len(),
                limits::MODULE_BYTES_MAX
            )));
        }
        let wasm = Arc::new(wasm);
        let exec = executor.clone();
        let source = wasm.clone();
        let (exposed, facts, module) = glommio::executor()
            .spawn_blocking(move || -> Result<_> {
                let (exposed, facts) = rewrite::expose(&source)?;
                let module = exec.compile(&exposed)?;
                Ok((exposed, facts, module))
            })
            .await
            .map_err(invalid)?;
        if !facts.exports_start {
            return Err(UploadError::Invalid(
                "the module does not export `_start`".into(),
            ));
        }
        let wasm_sha256 = hex::encode(Sha256::digest(wasm.as_slice()));
        let pre = executor.prepare(&module).map_err(|e| invalid(e.into()))?;
        let function = Arc::new(Function {
            user: user.to_owned(),
            name: name.to_owned(),
            wasm_sha256: wasm_sha256.clone(),
            module,
            pre,
            facts: facts.clone(),
            image: Default::default(),
        });
        let module = match run_zygote(executor, function.clone()).await.map_err(|e| {
            UploadError::Invalid(format!(
                "pre-initialising the module: {}",
                crate::exec::describe_failure(&e)
            ))
        })? {
            None => function.module.clone(),
            Some(state) => {
                let image_bytes = state
                    .memory
                    .chunks(4096)
                    .filter(|page| page.iter().any(|b| *b != 0))
                    .count()
                    * 4096;
                if image_bytes > limits::ZYGOTE_IMAGE_BYTES_MAX {
                    return Err(UploadError::Invalid(format!(
                        "the pre-initialised memory holds {image_bytes} bytes that are not zero; the cap is {} bytes",
                        limits::ZYGOTE_IMAGE_BYTES_MAX
                    )));
                }
                let exec = executor.clone();
                glommio::executor()
                    .spawn_blocking(move || -> Result<_> {
                        let baked = rewrite::bake(
                            &exposed,
                            &Image {
                                memory: &state.memory,
                                globals: &state.globals,
                            },
                        )?;
                        Ok(exec.compile(&baked)?)
                    })
                    .await
                    .map_err(invalid)?
            }
        };
        let user_dir = self.dir.join(user);
        let meta = Meta {
            wasm_sha256,
            has_table: facts.has_table,
            mutable_globals: facts.mutable_globals.clone(),
            exports_start: facts.exports_start,
            exports_ctors: facts.exports_ctors,
            exports_zygote: facts.exports_zygote,
        };
        let exec = executor.clone();
        let key = (user.to_owned(), name.to_owned());
        let (owned_key, disk) = (key.clone(), self.disk.clone());
        let function = glommio::executor()
            .spawn_blocking(move || -> Result<Function> {
                let (user, name) = &owned_key;
                let version = store_version(&user_dir, name, ticket, &wasm, &module, &meta)?;
                let function = load(
                    &exec,
                    &VersionFiles::of(&user_dir, name, &version),
                    user,
                    name,
                )?;
                // The later upload's version is the one named, whichever
                // finished first.
                let mut applied = disk.lock().unwrap_or_else(|p| p.into_inner());
                if applied.get(&owned_key).is_none_or(|t| *t < ticket) {
                    write_atomic(
                        &user_dir.join(format!("{name}.current")),
                        version.as_bytes(),
                    )?;
                    sync_dir(&user_dir)?;
                    applied.insert(owned_key.clone(), ticket);
                }
                Ok(function)
            })
            .await
            .map_err(UploadError::Internal)?;
        let function = Arc::new(function);
        let mut applied = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if applied.get(&key).is_none_or(|t| *t < ticket) {
            let mut map = HashMap::clone(&self.functions.load());
            map.entry(user.to_owned())
                .or_default()
                .insert(name.to_owned(), function.clone());
            self.functions.store(Arc::new(map));
            applied.insert(key, ticket);
        }
        Ok(function)
    }
}

/// Where one stored version's files are.
struct VersionFiles {
    wasm: PathBuf,
    artifact: PathBuf,
    meta: PathBuf,
}

impl VersionFiles {
    fn of(user_dir: &Path, name: &str, version: &str) -> VersionFiles {
        let dir = user_dir.join(format!("{name}.v")).join(version);
        VersionFiles {
            wasm: dir.join("module.wasm"),
            artifact: dir.join("module.cwasm"),
            meta: dir.join("meta.json"),
        }
    }

    /// The files of the version `<name>.current` names, or of a function
    /// an older ferry stored in place; None when there is no function.
    fn current(user_dir: &Path, name: &str) -> Result<Option<VersionFiles>> {
        let pointer = user_dir.join(format!("{name}.current"));
        match std::fs::read_to_string(&pointer) {
            Ok(version) => {
                let version = version.trim();
                if version.is_empty() || version.contains(['/', '.']) {
                    bail!("{} names no version", pointer.display());
                }
                Ok(Some(VersionFiles::of(user_dir, name, version)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let legacy = VersionFiles {
                    wasm: user_dir.join(format!("{name}.wasm")),
                    artifact: user_dir.join(format!("{name}.cwasm")),
                    meta: user_dir.join(format!("{name}.json")),
                };
                Ok(legacy.meta.exists().then_some(legacy))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", pointer.display())),
        }
    }
}

/// Writes a new version directory whole (temp name, synced, renamed) and
/// returns its name.
fn store_version(
    user_dir: &Path,
    name: &str,
    ticket: u64,
    wasm: &[u8],
    module: &wasmtime::Module,
    meta: &Meta,
) -> Result<String> {
    let versions = user_dir.join(format!("{name}.v"));
    std::fs::create_dir_all(&versions)
        .with_context(|| format!("creating {}", versions.display()))?;
    let artifact = module
        .serialize()
        .map_err(|e| anyhow!("serialising the compiled module: {e}"))?;
    // Unique across uploads and restarts: content, process, ticket.
    let version = format!(
        "{}-{}-{ticket}",
        &meta.wasm_sha256[..16],
        std::process::id()
    );
    let temp = versions.join(format!(".tmp-{version}"));
    std::fs::create_dir(&temp).with_context(|| format!("creating {}", temp.display()))?;
    let written = (|| -> Result<()> {
        write_synced(&temp.join("module.wasm"), wasm)?;
        write_synced(&temp.join("module.cwasm"), &artifact)?;
        write_synced(&temp.join("meta.json"), &serde_json::to_vec(meta)?)?;
        sync_dir(&temp)?;
        std::fs::rename(&temp, versions.join(&version))
            .with_context(|| format!("renaming {} into place", temp.display()))?;
        sync_dir(&versions)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(error);
    }
    Ok(version)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_data()
        .with_context(|| format!("syncing {}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // Unique per write: two shards may store the same function at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Removes version directories no `.current` names and temp leftovers (a
/// crash mid-upload), so disk holds one version per function.
fn remove_stale_versions(dir: &Path) {
    let Ok(users) = std::fs::read_dir(dir) else {
        return;
    };
    for user_dir in users.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        let Ok(entries) = std::fs::read_dir(&user_dir) else {
            continue;
        };
        for versions in entries.flatten().map(|e| e.path()) {
            let Some(name) = versions
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".v"))
                .map(str::to_owned)
            else {
                continue;
            };
            let current = std::fs::read_to_string(user_dir.join(format!("{name}.current")))
                .unwrap_or_default();
            let Ok(found) = std::fs::read_dir(&versions) else {
                continue;
            };
            for version in found.flatten() {
                if version.file_name().to_str() != Some(current.trim()) {
                    if let Err(error) = std::fs::remove_dir_all(version.path()) {
                        tracing::warn!(path = %version.path().display(), %error, "removing an old function version");
                    }
                }
            }
        }
    }
}

fn load(executor: &Executor, files: &VersionFiles, user: &str, name: &str) -> Result<Function> {
    let meta: Meta = serde_json::from_slice(
        &std::fs::read(&files.meta).context("reading the function's meta file")?,
    )
    .context("parsing the function's meta file")?;
    let artifact = &files.artifact;
    // SAFETY: the artifact was written by this node's `Module::serialize`
    // into a directory only the node writes; wasmtime checks its header
    // (engine version and settings) before mapping it.
    let module = unsafe { wasmtime::Module::deserialize_file(&executor.engine, artifact) }
        .map_err(|e| anyhow!("{e:#}"))
        .with_context(|| format!("loading {}", artifact.display()))?;
    // Build the copy-on-write memory image now (a memfd filled with the
    // zygote's pages, ~2 ms for a C module), not in the first call.
    module
        .initialize_copy_on_write_image()
        .map_err(|e| anyhow!("preparing the memory image: {e}"))?;
    let pre = executor.prepare(&module)?;
    Ok(Function {
        user: user.to_owned(),
        name: name.to_owned(),
        wasm_sha256: meta.wasm_sha256,
        module,
        pre,
        facts: ModuleFacts {
            has_table: meta.has_table,
            mutable_globals: meta.mutable_globals,
            exports_start: meta.exports_start,
            exports_ctors: meta.exports_ctors,
            exports_zygote: meta.exports_zygote,
        },
        image: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::check_name;

    #[test]
    fn names_are_path_safe() {
        for good in ["ndp", "word_count", "a.b-c", "X1"] {
            assert!(check_name("function", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(check_name("function", bad).is_err(), "{bad}");
        }
    }
}
