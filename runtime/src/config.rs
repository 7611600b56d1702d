//! Node configuration: TOML file -> [`RawConfig`] (serde) -> [`Config::validate`]
//! (field by field, so a new field cannot be forgotten) -> an immutable
//! [`Config`] shared by every shard. CLI flags are applied to the raw form
//! before validation, so they go through the same checks.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ferry_transport::{ClusterSecret, TransportConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::limits;

/// The transport port of a cluster node unless its entry names another.
pub const TRANSPORT_PORT_DEFAULT: u16 = 7000;

/// The validated, immutable configuration of one node.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub upload_addr: SocketAddr,
    /// Node-to-node transport (object reads and writes from compute nodes);
    /// None: no transport listener.
    pub transport_addr: Option<SocketAddr>,
    /// Shards to run (one per core); `None` means every core hwloc reports.
    pub cores: Option<usize>,
    /// Directories of `<user>/<function>.wasm` files uploaded at start.
    pub functions_dirs: Vec<PathBuf>,
    /// Written once the node serves, with the bound ports (for scripts/tests).
    pub ready_file: Option<PathBuf>,
    /// How long an idle shard polls before it sleeps: lower latency for a
    /// CPU per shard (0: sleep at once).
    pub spin_us: u64,
    pub limits: Limits,
    pub role: Role,
    pub backend: Backend,
    /// Every node of the cluster (empty for a node started alone).
    pub cluster: Vec<PeerNode>,
    /// Per-user API tokens (`[auth]`); None: no authentication, as in Faasm.
    pub auth: Option<Auth>,
    /// What nodes prove to each other in the transport's Hello (`[cluster]`);
    /// None: the transport is unauthenticated.
    pub cluster_secret: Option<ClusterSecret>,
    /// Per-user quotas (`[quotas]`); none set: no user is limited.
    pub quotas: QuotaConfig,
}

/// Per-user API tokens (HTTP.md, "Authentication"), kept as SHA-256
/// digests: the tokens themselves are not held past start-up, and every
/// comparison is of 32 bytes in constant time.
#[derive(Clone)]
pub struct Auth {
    /// (user, digest of the user's token), sorted by user.
    users: Vec<(String, [u8; 32])>,
    /// Whether `/healthz`, `/metrics` and `/ping` need a token too (any
    /// user's); by default they are open, for probes and scrapers.
    pub guard_operations: bool,
}

impl Auth {
    /// Whether `token` is `user`'s.
    pub fn is_token_of(&self, user: &str, token: &str) -> bool {
        let digest = token_digest(token);
        self.users
            .binary_search_by(|(name, _)| name.as_str().cmp(user))
            .is_ok_and(|i| bool::from(self.users[i].1.ct_eq(&digest)))
    }

    /// The user `token` belongs to, if any. Compares with every user's
    /// digest, without stopping at a match, so the time taken says nothing
    /// of which stored token matched or how much of it (1,024 users: ~32 KiB
    /// of compares, a few microseconds).
    pub fn owner(&self, token: &str) -> Option<&str> {
        let digest = token_digest(token);
        let mut owner = None;
        for (user, stored) in &self.users {
            if bool::from(stored.ct_eq(&digest)) {
                owner = Some(user.as_str());
            }
        }
        owner
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field(
                "users",
                &self.users.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            )
            .field("guard_operations", &self.guard_operations)
            .finish()
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What a node does (DESIGN.md, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs calls; reads objects from the storage nodes.
    Compute,
    /// Owns objects (local disk or the Ceph OSDs on its host), runs funclets.
    Storage,
    /// Both, with the objects local.
    All,
}

impl Role {
    fn parse(text: &str) -> Result<Role> {
        match text {
            "compute" => Ok(Role::Compute),
            "storage" => Ok(Role::Storage),
            "all" => Ok(Role::All),
            other => bail!("unknown role {other:?}: use compute, storage or all"),
        }
    }

    pub fn holds_objects(self) -> bool {
        matches!(self, Role::Storage | Role::All)
    }
}

/// Where objects are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Files under each storage node's data directory.
    Embedded,
    /// A Ceph RADOS pool.
    Ceph { conf: PathBuf, pool: String },
}

/// Another node of the cluster, as the config file names it.
#[derive(Debug, Clone)]
pub struct PeerNode {
    pub name: String,
    pub role: Role,
    pub http: SocketAddr,
    pub upload: SocketAddr,
    pub transport: SocketAddr,
    /// The CRUSH host its Ceph OSDs sit under (`ceph osd tree`; by default
    /// the machine's short host name), for Ceph placement; defaults to
    /// `host`.
    pub ceph_host: String,
}

/// Per-call and per-shard limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes_max: u64,
    pub call_ms_max: u64,
    pub input_bytes_max: usize,
    pub output_bytes_max: usize,
    pub log_bytes_max: usize,
    pub calls_in_flight_max: usize,
    pub async_result_retention_s: u64,
    pub header_read_ms_max: u64,
    /// Offloaded funclets a storage shard runs at once / lets wait.
    pub offload_slots_max: usize,
    pub offload_queue_max: usize,
    /// How long a compute node waits for an offloaded funclet.
    pub offload_ms_max: u64,
    /// Linear memory all calls of the node may hold at once.
    pub node_memory_bytes_max: u64,
    /// HTTP request and response body bytes all requests of the node may
    /// hold in memory at once; taken before a body is read.
    pub http_buffer_bytes_max: u64,
    /// Longest one write of an answer may wait on a client that stopped
    /// reading before its connection is closed.
    pub response_write_ms_max: u64,
    /// Bytes one call may write to files; past it a write fails ENOSPC.
    pub file_bytes_max: u64,
    /// Not a bound: Faasm's `CAPTURE_STDOUT=on`, a call's stdout then
    /// "\n" before its output (off by default, as in Faasm).
    pub capture_stdout: bool,
}

/// The file's form, and the form CLI flags write into before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub node: RawNode,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub storage: RawStorage,
    /// The cluster's nodes; `ferry node --name NAME` picks its own entry.
    #[serde(default)]
    pub nodes: Vec<RawPeer>,
    /// Per-user API tokens; absent: no authentication.
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub quotas: RawQuotas,
}

/// `[quotas]`: what every user may hold at once on this node, and
/// `[quotas.users.NAME]` for a user whose quota differs (each field it
/// names replaces the default's).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuotas {
    pub calls_in_flight_max: Option<usize>,
    pub object_bytes_max: Option<u64>,
    #[serde(default)]
    pub users: BTreeMap<String, RawUserQuota>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserQuota {
    pub calls_in_flight_max: Option<usize>,
    pub object_bytes_max: Option<u64>,
}

/// The quotas, validated: a user's own entry or the default.
#[derive(Debug, Clone, Default)]
pub struct QuotaConfig {
    pub default: QuotaLimits,
    pub users: std::collections::HashMap<String, QuotaLimits>,
}

/// One user's quotas; `None`: not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// HTTP calls of the user running or queued on this node at once
    /// (chained calls ride on their parent's).
    pub calls_in_flight_max: Option<usize>,
    /// Bytes of objects the user may keep, summed over the cluster's
    /// storage nodes as this node lists them.
    pub object_bytes_max: Option<u64>,
}

/// `[auth]`: `tokens = { alice = "...", bob = "..." }` (or an
/// `[auth.tokens]` table) and `guard_operations`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// User name -> that user's API token.
    #[serde(default)]
    pub tokens: BTreeMap<String, RawSecret>,
    /// `/healthz`, `/metrics` and `/ping` need a token too (default false).
    pub guard_operations: Option<bool>,
}

/// `[cluster]`: the secret nodes prove to each other, inline or in a file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub secret: Option<RawSecret>,
    /// A file holding the secret (a trailing newline is not part of it).
    pub secret_file: Option<PathBuf>,
}

/// A secret as the file spells it; `Debug` does not show it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct RawSecret(pub String);

impl std::fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"..\"")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// `embedded` (default) or `ceph`.
    pub backend: Option<String>,
    pub ceph_conf: Option<PathBuf>,
    pub ceph_pool: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub name: String,
    pub role: String,
    /// Host name or address the node listens on and peers reach it at.
    pub host: String,
    pub http_port: Option<u16>,
    pub upload_port: Option<u16>,
    pub transport_port: Option<u16>,
    pub ceph_host: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Option<String>,
    pub data: Option<PathBuf>,
    pub bind: Option<IpAddr>,
    pub http_port: Option<u16>,
    pub upload_port: Option<u16>,
    pub transport_port: Option<u16>,
    pub cores: Option<usize>,
    #[serde(default)]
    pub functions: Vec<PathBuf>,
    pub ready_file: Option<PathBuf>,
    pub role: Option<String>,
    pub spin_us: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub memory_bytes_max: Option<u64>,
    pub call_ms_max: Option<u64>,
    pub input_bytes_max: Option<usize>,
    pub output_bytes_max: Option<usize>,
    pub log_bytes_max: Option<usize>,
    pub calls_in_flight_max: Option<usize>,
    pub async_result_retention_s: Option<u64>,
    pub header_read_ms_max: Option<u64>,
    pub offload_slots_max: Option<usize>,
    pub offload_queue_max: Option<usize>,
    pub offload_ms_max: Option<u64>,
    pub node_memory_bytes_max: Option<u64>,
    pub http_buffer_bytes_max: Option<u64>,
    pub response_write_ms_max: Option<u64>,
    pub file_bytes_max: Option<u64>,
    pub capture_stdout: Option<bool>,
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
    }
}

impl Config {
    pub fn validate(raw: RawConfig) -> Result<Config> {
        let RawConfig {
            node,
            limits,
            storage,
            nodes,
            auth,
            cluster: raw_cluster,
            quotas,
        } = raw;
        let RawNode {
            name,
            data,
            bind,
            http_port,
            upload_port,
            transport_port,
            cores,
            functions,
            ready_file,
            role,
            spin_us,
        } = node;
        let role = role
            .as_deref()
            .map(Role::parse)
            .transpose()?
            .unwrap_or(Role::All);
        let backend = Backend::validate(storage)?;
        let cluster = nodes
            .into_iter()
            .map(PeerNode::validate)
            .collect::<Result<Vec<_>>>()?;
        for (i, peer) in cluster.iter().enumerate() {
            if cluster[..i].iter().any(|p| p.name == peer.name) {
                bail!("node name {:?} appears twice in the cluster", peer.name);
            }
        }
        if role == Role::Compute
            && backend == Backend::Embedded
            && !cluster.iter().any(|p| p.role.holds_objects())
        {
            bail!("a compute node on the embedded backend needs at least one storage node in [[nodes]]");
        }
        let auth = auth.map(Auth::validate).transpose()?;
        let cluster_secret = cluster_secret(raw_cluster)?;
        // Without tokens anyone who reaches the node may act as any user:
        // by default only this machine can. With tokens, every address.
        let bind = bind.unwrap_or(if auth.is_some() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        });
        let http_port = http_port.unwrap_or(8080);
        let upload_port = upload_port.unwrap_or(8002);
        if http_port == upload_port && http_port != 0 {
            bail!("the invocation and upload ports must differ (both are {http_port})");
        }
        if cores == Some(0) {
            bail!("cores must be at least 1");
        }
        let name = name.unwrap_or_else(|| "ferry".to_owned());
        if name.is_empty() {
            bail!("node name must not be empty");
        }
        Ok(Config {
            name,
            // Absolute, so nothing depends on the working directory later.
            data_dir: std::path::absolute(data.unwrap_or_else(|| PathBuf::from("data")))
                .context("resolving the data directory")?,
            http_addr: SocketAddr::new(bind, http_port),
            upload_addr: SocketAddr::new(bind, upload_port),
            transport_addr: transport_port.map(|port| SocketAddr::new(bind, port)),
            cores,
            functions_dirs: functions,
            ready_file,
            spin_us: match spin_us.unwrap_or(0) {
                us @ 0..=10_000 => us,
                us => bail!("spin_us is at most 10000 (10 ms), not {us}"),
            },
            limits: Limits::validate(limits)?,
            role,
            backend,
            cluster,
            auth,
            cluster_secret,
            quotas: QuotaConfig::validate(quotas)?,
        })
    }

    /// This node's transport settings: its name and the cluster secret,
    /// with the bounds of `ferry_transport::limits`.
    pub fn transport(&self) -> TransportConfig {
        let mut config = TransportConfig::new(self.name.clone());
        config.secret = self.cluster_secret.clone();
        config
    }
}

/// A user or function name: the path-safe characters Faasm's names use.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= limits::NAME_BYTES_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !ok {
        bail!(
            "invalid {kind} name {name:?}: use 1-{} of [A-Za-z0-9_.-], not starting with '.'",
            limits::NAME_BYTES_MAX
        );
    }
    Ok(())
}

impl QuotaConfig {
    fn validate(raw: RawQuotas) -> Result<QuotaConfig> {
        let RawQuotas {
            calls_in_flight_max,
            object_bytes_max,
            users,
        } = raw;
        let check = |what: &str, limits: QuotaLimits| -> Result<QuotaLimits> {
            if limits.calls_in_flight_max == Some(0) {
                bail!("{what}.calls_in_flight_max must be at least 1 (leave it out for no quota)");
            }
            Ok(limits)
        };
        let default = check(
            "quotas",
            QuotaLimits {
                calls_in_flight_max,
                object_bytes_max,
            },
        )?;
        let mut validated = std::collections::HashMap::new();
        for (user, own) in users {
            check_name("user", &user).context("[quotas.users]")?;
            let limits = QuotaLimits {
                calls_in_flight_max: own.calls_in_flight_max.or(default.calls_in_flight_max),
                object_bytes_max: own.object_bytes_max.or(default.object_bytes_max),
            };
            validated.insert(
                user.clone(),
                check(&format!("quotas.users.{user}"), limits)?,
            );
        }
        Ok(QuotaConfig {
            default,
            users: validated,
        })
    }
}

impl Auth {
    fn validate(raw: RawAuth) -> Result<Auth> {
        let RawAuth {
            tokens,
            guard_operations,
        } = raw;
        if tokens.is_empty() {
            bail!("[auth] has no tokens: add `tokens = {{ USER = \"TOKEN\" }}`, or remove [auth] to run without authentication");
        }
        if tokens.len() > limits::AUTH_USERS_MAX {
            bail!(
                "[auth] names {} users; at most {} are supported",
                tokens.len(),
                limits::AUTH_USERS_MAX
            );
        }
        let mut users: Vec<(String, [u8; 32])> = Vec::with_capacity(tokens.len());
        for (user, RawSecret(token)) in tokens {
            check_name("user", &user).context("[auth] tokens")?;
            if !(limits::TOKEN_BYTES_MIN..=limits::TOKEN_BYTES_MAX).contains(&token.len()) {
                bail!(
                    "[auth] token of user {user}: {} bytes, must be {}..={} (e.g. `openssl rand -hex 32`)",
                    token.len(),
                    limits::TOKEN_BYTES_MIN,
                    limits::TOKEN_BYTES_MAX
                );
            }
            // RFC 6750's b64token: what fits `Authorization: Bearer` as is.
            if !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
            {
                bail!("[auth] token of user {user}: use only A-Z a-z 0-9 - . _ ~ + / =");
            }
            let digest = token_digest(&token);
            if let Some((other, _)) = users.iter().find(|(_, d)| *d == digest) {
                bail!("[auth] users {other} and {user} have the same token");
            }
            users.push((user, digest));
        }
        // BTreeMap order: sorted by user, for `is_token_of`'s search.
        debug_assert!(users.windows(2).all(|w| w[0].0 < w[1].0));
        Ok(Auth {
            users,
            guard_operations: guard_operations.unwrap_or(false),
        })
    }
}

fn cluster_secret(raw: RawCluster) -> Result<Option<ClusterSecret>> {
    let RawCluster {
        secret,
        secret_file,
    } = raw;
    let bytes = match (secret, secret_file) {
        (Some(_), Some(_)) => bail!("[cluster] takes secret or secret_file, not both"),
        (Some(RawSecret(secret)), None) => secret.into_bytes(),
        (None, Some(path)) => {
            let mut bytes = std::fs::read(&path)
                .with_context(|| format!("reading the cluster secret {}", path.display()))?;
            while bytes.last().is_some_and(u8::is_ascii_whitespace) {
                bytes.pop();
            }
            bytes
        }
        (None, None) => return Ok(None),
    };
    ClusterSecret::new(&bytes)
        .map(Some)
        .map_err(|e| anyhow!("[cluster] secret: {e}"))
}

impl Backend {
    fn validate(raw: RawStorage) -> Result<Backend> {
        let RawStorage {
            backend,
            ceph_conf,
            ceph_pool,
        } = raw;
        match backend.as_deref().unwrap_or("embedded") {
            "embedded" => {
                if ceph_conf.is_some() || ceph_pool.is_some() {
                    bail!("ceph_conf and ceph_pool need backend = \"ceph\"");
                }
                Ok(Backend::Embedded)
            }
            "ceph" => Ok(Backend::Ceph {
                conf: ceph_conf.unwrap_or_else(|| PathBuf::from("/etc/ceph/ceph.conf")),
                pool: ceph_pool.unwrap_or_else(|| "ferry".to_owned()),
            }),
            other => bail!("unknown storage backend {other:?}: use embedded or ceph"),
        }
    }
}

impl PeerNode {
    fn validate(raw: RawPeer) -> Result<PeerNode> {
        let RawPeer {
            name,
            role,
            host,
            http_port,
            upload_port,
            transport_port,
            ceph_host,
        } = raw;
        let resolve = |port: u16| -> Result<SocketAddr> {
            (host.as_str(), port)
                .to_socket_addrs()
                .with_context(|| format!("resolving node {name}'s host {host}"))?
                .next()
                .with_context(|| format!("node {name}'s host {host} has no address"))
        };
        Ok(PeerNode {
            role: Role::parse(&role).with_context(|| format!("node {name}"))?,
            http: resolve(http_port.unwrap_or(8080))?,
            upload: resolve(upload_port.unwrap_or(8002))?,
            transport: resolve(transport_port.unwrap_or(TRANSPORT_PORT_DEFAULT))?,
            ceph_host: ceph_host.unwrap_or_else(|| host.clone()),
            name,
        })
    }
}

impl RawConfig {
    /// Makes this the config of cluster node `name`: its role, and its
    /// addresses as the listening ones.
    pub fn select_node(&mut self, name: &str) -> Result<()> {
        let peer = self
            .nodes
            .iter()
            .find(|p| p.name == name)
            .with_context(|| format!("no node named {name:?} in the config's [[nodes]]"))?;
        let address = PeerNode::validate(RawPeer {
            name: peer.name.clone(),
            role: peer.role.clone(),
            host: peer.host.clone(),
            http_port: peer.http_port,
            upload_port: peer.upload_port,
            transport_port: peer.transport_port,
            ceph_host: peer.ceph_host.clone(),
        })?;
        self.node.name = Some(name.to_owned());
        self.node.role = Some(peer.role.clone());
        self.node.bind = self.node.bind.or(Some(address.http.ip()));
        self.node.http_port = Some(address.http.port());
        self.node.upload_port = Some(address.upload.port());
        self.node.transport_port = Some(address.transport.port());
        Ok(())
    }
}

impl Limits {
    fn validate(raw: RawLimits) -> Result<Limits> {
        let RawLimits {
            memory_bytes_max,
            call_ms_max,
            input_bytes_max,
            output_bytes_max,
            log_bytes_max,
            calls_in_flight_max,
            async_result_retention_s,
            header_read_ms_max,
            offload_slots_max,
            offload_queue_max,
            offload_ms_max,
            node_memory_bytes_max,
            http_buffer_bytes_max,
            response_write_ms_max,
            file_bytes_max,
            capture_stdout,
        } = raw;
        let memory_bytes_max = memory_bytes_max.unwrap_or(limits::MEMORY_BYTES_MAX_DEFAULT);
        if !(64 << 10..=limits::MEMORY_BYTES_MAX_CEILING).contains(&memory_bytes_max) {
            bail!(
                "limits.memory_bytes_max must be between 64 KiB and {} bytes, not {memory_bytes_max}",
                limits::MEMORY_BYTES_MAX_CEILING
            );
        }
        let call_ms_max = call_ms_max.unwrap_or(limits::CALL_MS_MAX_DEFAULT);
        if call_ms_max == 0 {
            bail!("limits.call_ms_max must be positive");
        }
        let input_bytes_max = input_bytes_max.unwrap_or(limits::INPUT_BYTES_MAX_DEFAULT);
        if input_bytes_max > limits::INPUT_BYTES_MAX_DEFAULT {
            bail!(
                "limits.input_bytes_max is at most {} bytes (the HTTP body cap)",
                limits::INPUT_BYTES_MAX_DEFAULT
            );
        }
        let calls_in_flight_max =
            calls_in_flight_max.unwrap_or(limits::CALLS_IN_FLIGHT_MAX_DEFAULT);
        if !(1..=4096).contains(&calls_in_flight_max) {
            bail!("limits.calls_in_flight_max must be between 1 and 4096");
        }
        let offload_slots_max = offload_slots_max.unwrap_or(limits::OFFLOAD_SLOTS_MAX_DEFAULT);
        if !(1..=1024).contains(&offload_slots_max) {
            bail!("limits.offload_slots_max must be between 1 and 1024");
        }
        let offload_queue_max = offload_queue_max.unwrap_or(limits::OFFLOAD_QUEUE_MAX_DEFAULT);
        if offload_queue_max > 65_536 {
            bail!("limits.offload_queue_max is at most 65536");
        }
        let offload_ms_max = offload_ms_max.unwrap_or(limits::OFFLOAD_MS_MAX_DEFAULT);
        if offload_ms_max == 0 {
            bail!("limits.offload_ms_max must be positive");
        }
        let node_memory_bytes_max =
            node_memory_bytes_max.unwrap_or(limits::NODE_MEMORY_BYTES_MAX_DEFAULT);
        if node_memory_bytes_max < memory_bytes_max {
            bail!(
                "limits.node_memory_bytes_max ({node_memory_bytes_max}) must be at least limits.memory_bytes_max ({memory_bytes_max})"
            );
        }
        let http_buffer_bytes_max =
            http_buffer_bytes_max.unwrap_or(limits::HTTP_BUFFER_BYTES_MAX_DEFAULT);
        let one_request = limits::JSON_BODY_BYTES_MAX.max(limits::HTTP_OBJECT_CHUNK_BYTES) as u64;
        if http_buffer_bytes_max < one_request {
            bail!("limits.http_buffer_bytes_max must be at least {one_request} (one invocation body), not {http_buffer_bytes_max}");
        }
        let response_write_ms_max =
            response_write_ms_max.unwrap_or(limits::RESPONSE_WRITE_MS_MAX_DEFAULT);
        if response_write_ms_max == 0 {
            bail!("limits.response_write_ms_max must be positive");
        }
        Ok(Limits {
            node_memory_bytes_max,
            http_buffer_bytes_max,
            response_write_ms_max,
            file_bytes_max: file_bytes_max.unwrap_or(limits::FILE_BYTES_MAX_DEFAULT),
            capture_stdout: capture_stdout.unwrap_or(false),
            offload_slots_max,
            offload_queue_max,
            offload_ms_max,
            memory_bytes_max,
            call_ms_max,
            input_bytes_max,
            output_bytes_max: output_bytes_max.unwrap_or(limits::OUTPUT_BYTES_MAX_DEFAULT),
            log_bytes_max: log_bytes_max.unwrap_or(limits::LOG_BYTES_MAX_DEFAULT),
            calls_in_flight_max,
            async_result_retention_s: async_result_retention_s
                .unwrap_or(limits::ASYNC_RESULT_RETENTION_S_DEFAULT),
            header_read_ms_max: header_read_ms_max.unwrap_or(limits::HEADER_READ_MS_MAX_DEFAULT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_faasm_ports() -> Result<()> {
        let config = Config::validate(RawConfig::default())?;
        assert_eq!(config.http_addr.port(), 8080);
        assert_eq!(config.upload_addr.port(), 8002);
        Ok(())
    }

    #[test]
    fn cluster_nodes_pick_their_entry() -> Result<()> {
        let text = r#"
            [storage]
            backend = "embedded"
            [[nodes]]
            name = "s1"
            role = "storage"
            host = "127.0.0.2"
            [[nodes]]
            name = "c1"
            role = "compute"
            host = "127.0.0.3"
            http_port = 9080
        "#;
        let mut raw: RawConfig = toml::from_str(text)?;
        raw.select_node("c1")?;
        let config = Config::validate(raw)?;
        assert_eq!(config.role, Role::Compute);
        assert_eq!(config.http_addr, "127.0.0.3:9080".parse()?);
        assert_eq!(config.cluster.len(), 2);
        let mut raw: RawConfig = toml::from_str(text)?;
        assert!(raw.select_node("nope").is_err());
        let lonely: RawConfig = toml::from_str("[node]\nrole = \"compute\"\n")?;
        assert!(
            Config::validate(lonely).is_err(),
            "a compute node needs storage nodes"
        );
        let twice: RawConfig = toml::from_str(
            "[[nodes]]\nname=\"a\"\nrole=\"all\"\nhost=\"127.0.0.1\"\n[[nodes]]\nname=\"a\"\nrole=\"all\"\nhost=\"127.0.0.1\"\n",
        )?;
        assert!(Config::validate(twice).is_err());
        Ok(())
    }

    fn validate_text(text: &str) -> Result<Config> {
        Config::validate(toml::from_str(text)?)
    }

    #[test]
    fn auth_tokens_are_checked_and_choose_the_default_bind() -> Result<()> {
        let open = Config::validate(RawConfig::default())?;
        assert!(open.auth.is_none());
        assert_eq!(open.http_addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(open.upload_addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let config = validate_text(
            "[auth]\ntokens = { alice = \"alice-token-0123456789\", bob = \"bob-token-0123456789ab\" }\n",
        )?;
        assert_eq!(config.http_addr.ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let auth = config.auth.as_ref().context("no auth")?;
        assert_eq!(auth.users(), 2);
        assert!(auth.is_token_of("alice", "alice-token-0123456789"));
        assert!(!auth.is_token_of("alice", "bob-token-0123456789ab"));
        assert!(!auth.is_token_of("carol", "alice-token-0123456789"));
        assert_eq!(auth.owner("bob-token-0123456789ab"), Some("bob"));
        assert_eq!(auth.owner("no-one's-token-0123456"), None);
        assert!(!auth.guard_operations);
        assert!(!format!("{config:?}").contains("alice-token"));
        let guarded = validate_text(
            "[node]\nbind = \"127.0.0.1\"\n[auth]\nguard_operations = true\n[auth.tokens]\nalice = \"alice-token-0123456789\"\n",
        )?;
        assert!(guarded.auth.context("no auth")?.guard_operations);
        assert_eq!(guarded.http_addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        for bad in [
            "[auth]\n",
            "[auth]\ntokens = { alice = \"short\" }\n",
            "[auth]\ntokens = { alice = \"has spaces in it 0123456\" }\n",
            "[auth]\ntokens = { \"../x\" = \"alice-token-0123456789\" }\n",
            "[auth]\ntokens = { a = \"same-token-0123456789\", b = \"same-token-0123456789\" }\n",
            "[auth]\ntoken = { alice = \"alice-token-0123456789\" }\n",
        ] {
            assert!(validate_text(bad).is_err(), "accepted {bad:?}");
        }
        Ok(())
    }

    #[test]
    fn quotas_default_for_every_user_and_a_users_entry_replaces_fields() -> Result<()> {
        let none = Config::validate(RawConfig::default())?;
        assert_eq!(none.quotas.default, QuotaLimits::default());
        let config = validate_text(
            "[quotas]\ncalls_in_flight_max = 4\nobject_bytes_max = 1000\n\
             [quotas.users.alice]\nobject_bytes_max = 5\n",
        )?;
        assert_eq!(
            config.quotas.default,
            QuotaLimits {
                calls_in_flight_max: Some(4),
                object_bytes_max: Some(1000)
            }
        );
        assert_eq!(
            config.quotas.users["alice"],
            QuotaLimits {
                calls_in_flight_max: Some(4),
                object_bytes_max: Some(5)
            }
        );
        let zero = validate_text("[quotas]\ncalls_in_flight_max = 0\n").expect_err("0 is refused");
        assert!(format!("{zero:#}").contains("at least 1"), "{zero:#}");
        let bad_user = validate_text("[quotas.users.\"../x\"]\nobject_bytes_max = 5\n");
        assert!(bad_user.is_err());
        let small = validate_text("[limits]\nhttp_buffer_bytes_max = 1000\n")
            .expect_err("below one request");
        assert!(
            format!("{small:#}").contains("http_buffer_bytes_max"),
            "{small:#}"
        );
        Ok(())
    }

    #[test]
    fn the_cluster_secret_comes_inline_or_from_a_file() -> Result<()> {
        assert!(Config::validate(RawConfig::default())?
            .cluster_secret
            .is_none());
        let inline = validate_text("[cluster]\nsecret = \"0123456789abcdef0123\"\n")?;
        assert!(inline.transport().secret.is_some());
        assert!(!format!("{inline:?}").contains("0123456789abcdef"));
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef0123\n")?;
        let file = validate_text(&format!("[cluster]\nsecret_file = {:?}\n", path))?;
        assert!(file.cluster_secret.is_some());
        assert!(validate_text("[cluster]\nsecret = \"short\"\n").is_err());
        assert!(validate_text(&format!(
            "[cluster]\nsecret = \"0123456789abcdef0123\"\nsecret_file = {:?}\n",
            path
        ))
        .is_err());
        assert!(validate_text("[cluster]\nsecret_file = \"/nonexistent/secret\"\n").is_err());
        Ok(())
    }

    #[test]
    fn file_fields_are_checked() -> Result<()> {
        let raw: RawConfig =
            toml::from_str("[node]\nhttp_port = 9000\n[limits]\ncall_ms_max = 5\n")?;
        let config = Config::validate(raw)?;
        assert_eq!(config.http_addr.port(), 9000);
        assert_eq!(config.limits.call_ms_max, 5);
        assert!(toml::from_str::<RawConfig>("[node]\nhttp_prot = 1\n").is_err());
        let raw: RawConfig = toml::from_str("[limits]\nmemory_bytes_max = 1\n")?;
        assert!(Config::validate(raw).is_err());
        let raw: RawConfig = toml::from_str("[node]\nspin_us = 20000\n")?;
        assert!(Config::validate(raw).is_err(), "spinning is bounded");
        Ok(())
    }
}
