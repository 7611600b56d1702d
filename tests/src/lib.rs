//! ferry-tests: end-to-end tests that start real `ferry` processes on
//! loopback (port 0, addresses read from `--ready-file`) and talk to them
//! over HTTP, as Faasm's clients do.
//!
//! The node binary is `target/release/ferry` (or `$FERRY_BIN`); the guest
//! functions are built from source by `guests/build.sh` into `guests/out`
//! (or `$FERRY_GUESTS`), which the harness runs when they are missing.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod words;

/// Free TCP ports for a cluster config written before its nodes start.
/// Each port picked stays bound until the `Ports` is dropped, so one
/// `Ports` never hands out the same port twice; a port bound and released
/// at once could come back on the next pick (a node then refused its own
/// config: "the invocation and upload ports must differ"). Drop it before
/// the nodes start.
#[derive(Default)]
pub struct Ports(Vec<std::net::TcpListener>);

impl Ports {
    pub fn new() -> Ports {
        Ports::default()
    }

    /// A free port on `ip`, held until this `Ports` is dropped.
    pub fn pick(&mut self, ip: &str) -> Result<u16> {
        let listener = std::net::TcpListener::bind((ip, 0))
            .with_context(|| format!("binding a free port on {ip}"))?;
        let port = listener.local_addr()?.port();
        self.0.push(listener);
        Ok(port)
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub fn ferry_bin() -> PathBuf {
    std::env::var_os("FERRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/ferry"))
}

/// The built guest functions, building them once if missing.
pub fn guests() -> Result<PathBuf> {
    static BUILD: Once = Once::new();
    let dir = std::env::var_os("FERRY_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("guests/out"));
    let mut result = Ok(());
    BUILD.call_once(|| {
        if !dir.join("examples/ndp/wordcount.wasm").exists() {
            let status = Command::new("bash")
                .arg(root().join("guests/build.sh"))
                .arg(&dir)
                .status();
            result = match status {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(anyhow::anyhow!("guests/build.sh failed: {s}")),
                Err(e) => Err(anyhow::anyhow!("running guests/build.sh: {e}")),
            };
        }
    });
    result?;
    if !dir.join("examples/ndp/wordcount.wasm").exists() {
        bail!(
            "guest functions missing in {}; run guests/build.sh",
            dir.display()
        );
    }
    Ok(dir)
}

/// A running node; killed when dropped.
pub struct Node {
    child: Child,
    pub http: String,
    pub upload: String,
    pub data: PathBuf,
    _scratch: Option<tempfile::TempDir>,
    agent: ureq::Agent,
}

/// A reply: status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How to start a node.
#[derive(Default, Clone)]
pub struct NodeOptions {
    /// Load the example and test functions (`--functions guests/out/examples
    /// --functions guests/out/tests`).
    pub functions: bool,
    /// Reuse this data directory instead of a fresh one.
    pub data: Option<PathBuf>,
    pub extra: Vec<String>,
    /// Start `ferry node --config FILE --name NAME` instead of `ferry up`.
    pub cluster: Option<(PathBuf, String)>,
    /// Run the node in this directory (`data` may then be relative to it).
    pub cwd: Option<PathBuf>,
}

impl Node {
    /// A node with the example and test functions loaded.
    pub fn with_functions() -> Result<Node> {
        Node::start(NodeOptions {
            functions: true,
            ..Default::default()
        })
    }

    pub fn start(options: NodeOptions) -> Result<Node> {
        let bin = ferry_bin();
        if !bin.exists() {
            bail!(
                "{} not found; build it with `cargo build --release -p ferry-runtime`",
                bin.display()
            );
        }
        let (scratch, data) = match options.data {
            Some(data) => (None, data),
            None => {
                let dir = tempfile::tempdir()?;
                let data = dir.path().join("data");
                (Some(dir), data)
            }
        };
        let ready = options
            .cwd
            .as_ref()
            .map_or_else(|| data.clone(), |cwd| cwd.join(&data))
            .with_extension(format!("ready-{}", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        let mut command = Command::new(&bin);
        match &options.cluster {
            None => command.args([
                "up",
                "--bind",
                "127.0.0.1",
                "--http-port",
                "0",
                "--upload-port",
                "0",
            ]),
            Some((config, name)) => command
                .args(["node", "--name", name])
                .arg("--config")
                .arg(config),
        };
        command
            .args(["--cores", "1"])
            .arg("--data")
            .arg(&data)
            .arg("--ready-file")
            .arg(&ready)
            .args(&options.extra)
            .env(
                "FERRY_LOG",
                std::env::var("FERRY_LOG").unwrap_or_else(|_| NODE_LOG.into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(cwd) = &options.cwd {
            command.current_dir(cwd);
        }
        if options.functions {
            let guests = guests()?;
            command.arg("--functions").arg(guests.join("examples"));
            command.arg("--functions").arg(guests.join("tests"));
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let (log, reader) = Log::follow(&mut child);
        let started = Instant::now();
        let (http, upload) = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let json: serde_json::Value = serde_json::from_str(&text)?;
                let addr = |k: &str| {
                    json[k]
                        .as_str()
                        .map(str::to_owned)
                        .context("ready file field")
                };
                break (addr("http")?, addr("upload")?);
            }
            if let Some(status) = child.try_wait()? {
                // Its last lines may still be in the pipe: read to the end.
                if let Some(reader) = reader {
                    let _ = reader.join();
                }
                bail!(
                    "ferry exited during start-up: {status}; its last lines of log:\n{}",
                    log.tail()
                );
            }
            if started.elapsed() > Duration::from_secs(120) {
                let stacks = thread_stacks(child.id());
                let _ = child.kill();
                bail!(
                    "ferry did not become ready within 120 s; its last lines of log:\n{}\n\
                     its threads' stacks:\n{stacks}",
                    log.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        Ok(Node {
            child,
            http,
            upload,
            data,
            _scratch: scratch,
            agent,
        })
    }

    fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply> {
        let mut response = response.context("HTTP request")?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()?;
        Ok(Reply {
            status,
            body,
            headers,
        })
    }

    /// POSTs a raw body to the invocation port.
    pub fn post_raw(&self, body: &[u8]) -> Result<Reply> {
        Self::reply(
            self.agent
                .post(format!("http://{}/f/", self.http))
                .send(body),
        )
    }

    /// POSTs a JSON message to the invocation port.
    pub fn invoke(&self, message: serde_json::Value) -> Result<Reply> {
        self.post_raw(message.to_string().as_bytes())
    }

    /// A synchronous call of `user/function` with `input`.
    pub fn call(&self, user: &str, function: &str, input: &str) -> Result<Reply> {
        self.invoke(serde_json::json!({"user": user, "function": function, "input_data": input}))
    }

    pub fn get(&self, port_url: &str, path: &str) -> Result<Reply> {
        Self::reply(self.agent.get(format!("http://{port_url}{path}")).call())
    }

    pub fn get_with(&self, port_url: &str, path: &str, header: (&str, &str)) -> Result<Reply> {
        Self::reply(
            self.agent
                .get(format!("http://{port_url}{path}"))
                .header(header.0, header.1)
                .call(),
        )
    }

    pub fn put(&self, port_url: &str, path: &str, body: &[u8]) -> Result<Reply> {
        Self::reply(
            self.agent
                .put(format!("http://{port_url}{path}"))
                .send(body),
        )
    }

    pub fn delete(&self, port_url: &str, path: &str) -> Result<Reply> {
        Self::reply(self.agent.delete(format!("http://{port_url}{path}")).call())
    }

    /// Any request with extra headers (e.g. `("Authorization", "Bearer T")`
    /// on a node with tokens); an empty `body` sends none.
    pub fn send(
        &self,
        method: &str,
        port_url: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{port_url}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::reply(if body.is_empty() {
            self.agent.run(request.body(())?)
        } else {
            self.agent.run(request.body(body.to_vec())?)
        })
    }

    pub fn upload_wasm(&self, user: &str, function: &str, wasm: &[u8]) -> Result<Reply> {
        self.put(&self.upload, &format!("/f/{user}/{function}"), wasm)
    }

    /// `/healthz` answers 200 and a trivial call succeeds.
    pub fn assert_serving(&self) -> Result<()> {
        let health = self.get(&self.http, "/healthz")?;
        if health.status != 200 || health.text() != "OK" {
            bail!("healthz: {} {}", health.status, health.text());
        }
        let echo = self.call("test", "echo", "ping")?;
        if echo.status != 200 || echo.text() != "ping" {
            bail!("echo after the bad inputs: {} {}", echo.status, echo.text());
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One scrape of `/metrics`.
    pub fn scrape(&self) -> Result<Scrape> {
        Ok(Scrape(self.get(&self.http, "/metrics")?.text()))
    }

    /// The value of one sample of `/metrics`, named with its labels as the
    /// exposition writes them (`ferry_offloads_total{result="accepted"}`);
    /// 0 when the node does not show it.
    pub fn metric(&self, sample: &str) -> Result<f64> {
        Ok(self.scrape()?.value(sample))
    }

    /// Waits until `done` holds, checking every 20 ms, for at most `limit`.
    pub fn wait_for(
        &self,
        limit: Duration,
        mut done: impl FnMut(&Node) -> Result<bool>,
    ) -> Result<()> {
        let started = Instant::now();
        while !done(self)? {
            if started.elapsed() > limit {
                bail!("condition not met within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the node (SIGKILL) and waits for it.
    pub fn kill(mut self) -> Result<PathBuf> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(self.data.clone())
    }
}

/// The log level of a test's nodes unless `FERRY_LOG` says otherwise:
/// warnings and errors, and each step of start-up (stores opened, Ceph
/// connected, functions loaded), so that a node that fails to start says
/// how far it got.
const NODE_LOG: &str =
    "warn,ferry_runtime::node=info,ferry_runtime::stores=info,ferry_storage=info";

/// Lines of a node's log kept for an error message.
const LOG_TAIL_LINES: usize = 60;

/// A node's log: each line goes on to the test's stderr (libtest shows it
/// when the test fails) and the last [`LOG_TAIL_LINES`] are kept.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<VecDeque<String>>>);

impl Log {
    /// Follows the child's piped stderr on a thread of its own until the
    /// child closes it; the thread, when it started. A line that is not
    /// UTF-8 is passed on with replacement characters: the thread must
    /// read to the end, or a node writing to a full pipe would block.
    fn follow(child: &mut Child) -> (Log, Option<std::thread::JoinHandle<()>>) {
        let log = Log::default();
        let Some(stderr) = child.stderr.take() else {
            return (log, None);
        };
        let kept = log.clone();
        // The thread inherits the test's output capture.
        let reader = std::thread::Builder::new()
            .name("node-log".into())
            .spawn(move || {
                let mut stderr = std::io::BufReader::new(stderr);
                let mut bytes = Vec::new();
                loop {
                    bytes.clear();
                    match stderr.read_until(b'\n', &mut bytes) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = String::from_utf8_lossy(&bytes).trim_end().to_owned();
                    eprintln!("{line}");
                    let mut tail = kept.0.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() == LOG_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            })
            .ok();
        (log, reader)
    }

    fn tail(&self) -> String {
        let tail = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if tail.is_empty() {
            return "(nothing)".into();
        }
        tail.iter().map(|line| format!("  {line}\n")).collect()
    }
}

/// Every thread's stack of process `pid`, from gdb when it is installed
/// (given 60 s at most): what a node that hangs is waiting for.
fn thread_stacks(pid: u32) -> String {
    let out = Command::new("timeout")
        .args(["60", "gdb", "-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "thread apply all bt 30"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| line.starts_with("Thread ") || line.starts_with('#'))
            .map(|line| format!("  {line}\n"))
            .collect(),
        Err(e) => format!("  (no stacks: running gdb: {e})\n"),
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's `/metrics` text, read once.
pub struct Scrape(pub String);

impl Scrape {
    /// The value of a sample named with its labels as the exposition
    /// writes them; 0 when absent.
    pub fn value(&self, sample: &str) -> f64 {
        self.0
            .lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == sample).then(|| value.parse().ok())?
            })
            .unwrap_or(0.0)
    }
}

/// Nodes of one cluster config, each its own process on its own loopback
/// address, all sharing one scratch directory.
pub struct Cluster {
    pub config: PathBuf,
    pub scratch: tempfile::TempDir,
}

impl Cluster {
    /// Writes a cluster config for `nodes` (name, role, host) with free
    /// ports, on the embedded backend.
    pub fn configure(nodes: &[(&str, &str, &str)]) -> Result<Cluster> {
        let scratch = tempfile::tempdir()?;
        let mut config = String::from("[storage]\nbackend = \"embedded\"\n");
        let mut ports = Ports::new();
        for (name, role, host) in nodes {
            config.push_str(&format!(
                "[[nodes]]\nname = \"{name}\"\nrole = \"{role}\"\nhost = \"{host}\"\nhttp_port = {}\nupload_port = {}\ntransport_port = {}\n",
                ports.pick(host)?,
                ports.pick(host)?,
                ports.pick(host)?
            ));
        }
        drop(ports);
        let path = scratch.path().join("cluster.toml");
        std::fs::write(&path, &config)?;
        Ok(Cluster {
            config: path,
            scratch,
        })
    }

    /// Starts node `name` with its data under the scratch directory.
    pub fn start(&self, name: &str, functions: bool, extra: &[&str]) -> Result<Node> {
        Node::start(NodeOptions {
            functions,
            data: Some(self.scratch.path().join(name)),
            cluster: Some((self.config.clone(), name.to_owned())),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
    }
}

/// Runs one call of the `state` test function per entry of `nodes`, all at
/// once, each appending the integers `0..appends` to state `key`; every
/// call must answer 200 `ok`.
pub fn append_state_at_once(nodes: &[&Node], key: &str, appends: usize) -> Result<()> {
    std::thread::scope(|scope| -> Result<()> {
        let calls: Vec<_> = nodes
            .iter()
            .map(|node| {
                scope.spawn(move || node.call("test", "state", &format!("append {key} {appends}")))
            })
            .collect();
        for call in calls {
            let reply = call
                .join()
                .map_err(|_| anyhow::anyhow!("a caller panicked"))??;
            anyhow::ensure!(
                (reply.status, reply.text().as_str()) == (200, "ok"),
                "append answered {}: {}",
                reply.status,
                reply.text()
            );
        }
        Ok(())
    })
}
