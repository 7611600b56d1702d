//! `ferry`: run a node, or talk to one.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use ferry_runtime::client::Client;
use ferry_runtime::config::{Config, RawConfig};

/// ferry: a serverless runtime for WebAssembly functions that runs the
/// I/O-heavy part of a function next to its data. It speaks Faasm's HTTP
/// API (invocations on :8080, uploads on :8002) and guest ABI.
///
/// Quick start: `ferry up` starts a node with its data in ./data; then
/// `ferry upload demo hello hello.wasm` and `ferry invoke demo hello --input hi`.
#[derive(Parser)]
#[command(name = "ferry", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start an all-in-one node (compute and storage roles, embedded object store).
    Up(UpArgs),
    /// Start one node of a cluster: its role, addresses and backend come
    /// from its entry in the cluster config (`[[nodes]]`, `[storage]`).
    Node {
        /// This node's name in the config's `[[nodes]]`.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        up: UpArgs,
    },
    /// Upload a wasm function.
    Upload {
        user: String,
        function: String,
        /// The .wasm file.
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Invoke a function and print its output (exit code 1 if it failed).
    Invoke {
        user: String,
        function: String,
        /// The call's input (input_data).
        #[arg(long, default_value = "")]
        input: String,
        /// Return the call id at once instead of waiting.
        #[arg(long = "async")]
        is_async: bool,
        /// Run every funclet locally: the no-offload baseline.
        #[arg(long)]
        forbid_ndp: bool,
        /// Extra argv for the function, split on spaces.
        #[arg(long, default_value = "")]
        cmdline: String,
        #[command(flatten)]
        target: Target,
    },
    /// Poll an asynchronous call.
    Status {
        /// The id an asynchronous invoke printed.
        id: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Objects in a user's namespace (the data functions read near).
    #[command(subcommand)]
    Object(ObjectCommand),
}

#[derive(Subcommand)]
enum ObjectCommand {
    /// Write an object from FILE (or stdin when FILE is omitted or `-`).
    Put {
        user: String,
        key: String,
        file: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Print an object to stdout.
    Get {
        user: String,
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete an object.
    Rm {
        user: String,
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// List a user's objects: a table of key and size in bytes, or with
    /// `--json` one JSON array of `{"key", "size"}` for scripts.
    Ls {
        user: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// Which node a client command talks to.
#[derive(Args)]
struct Target {
    /// The node's host name or address.
    #[arg(long, default_value = "localhost")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    #[arg(long, default_value_t = 8002)]
    upload_port: u16,
    /// The user's API token, for a node with `[auth]` tokens (sent as
    /// `Authorization: Bearer`); default: $FERRY_TOKEN.
    #[arg(long)]
    token: Option<String>,
}

impl Target {
    fn client(&self) -> Client {
        // The environment is read here, at the edge, and nowhere deeper.
        let token = self
            .token
            .clone()
            .or_else(|| std::env::var("FERRY_TOKEN").ok())
            .filter(|token| !token.is_empty());
        Client::new(
            &self.host,
            self.http_port,
            self.upload_port,
            token.as_deref(),
        )
    }
}

#[derive(Args)]
struct UpArgs {
    /// A TOML config file; the flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (functions, objects).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on (default: 127.0.0.1 without `[auth]` tokens,
    /// since then anyone who reaches the node acts as any user; 0.0.0.0
    /// with them; a cluster node's `host`).
    #[arg(long)]
    bind: Option<std::net::IpAddr>,
    /// Invocation port (0 picks a free one).
    #[arg(long)]
    http_port: Option<u16>,
    /// Upload port (0 picks a free one).
    #[arg(long)]
    upload_port: Option<u16>,
    /// Shards to run, one per core (default: every core).
    #[arg(long)]
    cores: Option<usize>,
    /// Upload every `<user>/<function>.wasm` under this directory at start;
    /// may be given more than once (default: the examples built into
    /// `guests/out/examples`, when present).
    #[arg(long)]
    functions: Vec<PathBuf>,
    /// Write the bound addresses as JSON here once the node serves.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Wall-clock limit of one call, in milliseconds.
    #[arg(long)]
    call_ms_max: Option<u64>,
    /// Linear-memory cap of one call, in bytes.
    #[arg(long)]
    memory_bytes_max: Option<u64>,
    /// Calls in flight per shard before the node answers 503.
    #[arg(long)]
    calls_in_flight_max: Option<usize>,
    /// Input cap of one call, in bytes.
    #[arg(long)]
    input_bytes_max: Option<usize>,
    /// How long a client may take to send request headers, in milliseconds
    /// (0: no limit).
    #[arg(long)]
    header_read_ms_max: Option<u64>,
    /// Offloaded funclets one shard of a storage node runs at once.
    #[arg(long)]
    offload_slots_max: Option<usize>,
    /// Offers that may wait for a slot before the next is declined.
    #[arg(long)]
    offload_queue_max: Option<usize>,
    /// How long a compute node waits for an offloaded funclet before it
    /// runs the funclet itself, in milliseconds.
    #[arg(long)]
    offload_ms_max: Option<u64>,
    /// Linear memory all calls of the node may hold at once, in bytes.
    #[arg(long)]
    node_memory_bytes_max: Option<u64>,
    /// Microseconds an idle shard polls before sleeping (lower latency,
    /// one busy core per shard; default 0).
    #[arg(long)]
    spin_us: Option<u64>,
    /// Where objects live: `embedded` (files under --data) or `ceph`.
    #[arg(long)]
    backend: Option<String>,
    /// The Ceph config file (with --backend ceph).
    #[arg(long)]
    ceph_conf: Option<PathBuf>,
    /// The RADOS pool (with --backend ceph; default `ferry`).
    #[arg(long)]
    ceph_pool: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ferry: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Up(args) => {
            init_logging();
            ferry_runtime::node::run(up_config(args, None)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Node { name, up } => {
            if up.config.is_none() {
                anyhow::bail!("ferry node needs --config FILE (the cluster config)");
            }
            init_logging();
            ferry_runtime::node::run(up_config(up, Some(&name))?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upload {
            user,
            function,
            file,
            target,
        } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let body = target.client().upload(&user, &function, &wasm)?.ok()?;
            println!("{}", String::from_utf8_lossy(&body));
            Ok(ExitCode::SUCCESS)
        }
        Command::Invoke {
            user,
            function,
            input,
            is_async,
            forbid_ndp,
            cmdline,
            target,
        } => {
            let message = serde_json::json!({
                "user": user, "function": function, "input_data": input,
                "async": is_async, "forbid_ndp": forbid_ndp, "cmdline": cmdline,
            });
            print_reply(target.client().invoke(&message)?)
        }
        Command::Status { id, target } => {
            let message = serde_json::json!({ "status": true, "id": id });
            print_reply(target.client().invoke(&message)?)
        }
        Command::Object(command) => object(command),
    }
}

/// Prints the body; a non-2xx reply goes to stderr and exits 1.
fn print_reply(reply: ferry_runtime::client::Reply) -> Result<ExitCode> {
    if (200..300).contains(&reply.status) {
        std::io::stdout().write_all(&reply.body)?;
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(ExitCode::from(1))
    }
}

fn object(command: ObjectCommand) -> Result<ExitCode> {
    match command {
        ObjectCommand::Put {
            user,
            key,
            file,
            target,
        } => {
            let bytes = match file {
                Some(path) if path.as_os_str() != "-" => {
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
                }
                _ => {
                    let mut bytes = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut bytes)
                        .context("reading stdin")?;
                    bytes
                }
            };
            print_reply(target.client().object_put(&user, &key, &bytes)?)
        }
        ObjectCommand::Get { user, key, target } => {
            print_reply(target.client().object_get(&user, &key)?)
        }
        ObjectCommand::Rm { user, key, target } => {
            print_reply(target.client().object_delete(&user, &key)?)
        }
        ObjectCommand::Ls { user, json, target } => {
            let reply = target.client().object_list(&user)?;
            if !(200..300).contains(&reply.status) {
                return print_reply(reply);
            }
            let objects = ferry_runtime::client::parse_listing(&reply.body)?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer(&mut out, &objects).context("writing the listing")?;
                writeln!(out)?;
            } else {
                out.write_all(ferry_runtime::client::listing_table(&objects).as_bytes())?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn up_config(args: UpArgs, node_name: Option<&str>) -> Result<Config> {
    let UpArgs {
        config,
        data,
        bind,
        http_port,
        upload_port,
        cores,
        functions,
        ready_file,
        call_ms_max,
        memory_bytes_max,
        calls_in_flight_max,
        input_bytes_max,
        header_read_ms_max,
        offload_slots_max,
        offload_queue_max,
        offload_ms_max,
        node_memory_bytes_max,
        spin_us,
        backend,
        ceph_conf,
        ceph_pool,
    } = args;
    let mut raw = match &config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    if let Some(name) = node_name {
        raw.select_node(name)?;
    }
    let storage = &mut raw.storage;
    storage.backend = backend.or(storage.backend.take());
    storage.ceph_conf = ceph_conf.or(storage.ceph_conf.take());
    storage.ceph_pool = ceph_pool.or(storage.ceph_pool.take());
    let node = &mut raw.node;
    node.data = data.or(node.data.take());
    node.bind = bind.or(node.bind);
    node.http_port = http_port.or(node.http_port);
    node.upload_port = upload_port.or(node.upload_port);
    node.cores = cores.or(node.cores);
    if !functions.is_empty() {
        node.functions = functions;
    }
    if node.functions.is_empty() {
        node.functions.extend(default_functions_dir());
    }
    node.ready_file = ready_file.or(node.ready_file.take());
    node.spin_us = spin_us.or(node.spin_us);
    let limits = &mut raw.limits;
    limits.call_ms_max = call_ms_max.or(limits.call_ms_max);
    limits.memory_bytes_max = memory_bytes_max.or(limits.memory_bytes_max);
    limits.calls_in_flight_max = calls_in_flight_max.or(limits.calls_in_flight_max);
    limits.input_bytes_max = input_bytes_max.or(limits.input_bytes_max);
    limits.header_read_ms_max = header_read_ms_max.or(limits.header_read_ms_max);
    limits.offload_slots_max = offload_slots_max.or(limits.offload_slots_max);
    limits.offload_queue_max = offload_queue_max.or(limits.offload_queue_max);
    limits.offload_ms_max = offload_ms_max.or(limits.offload_ms_max);
    limits.node_memory_bytes_max = node_memory_bytes_max.or(limits.node_memory_bytes_max);
    Config::validate(raw)
}

/// The example functions built from `guests/` (`guests/out/examples`),
/// looked up from the working directory and then beside the binary
/// (`target/release/ferry` -> `guests/out/examples`), so a plain `ferry up`
/// in a checkout loads them.
fn default_functions_dir() -> Option<PathBuf> {
    let beside_binary = std::env::current_exe().ok().and_then(|exe| {
        exe.parent()?
            .parent()?
            .parent()
            .map(|root| root.join("guests/out/examples"))
    });
    [Some(PathBuf::from("guests/out/examples")), beside_binary]
        .into_iter()
        .flatten()
        .find(|dir| dir.is_dir())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour for a person at a terminal only: a log written to a file or a
    // pipe stays plain text, and so does any output when NO_COLOR is set
    // to a non-empty value (no-color.org).
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}
