//! Per-user API tokens over real HTTP (HTTP.md, "Authentication"): with
//! `[auth]` tokens, every route that names a user wants that user's token
//! (none or an invalid one: 401, another user's: 403); a status poll sees
//! only the caller's calls; `/healthz`, `/metrics` and `/ping` follow
//! `guard_operations`. Without tokens the node is open, as Faasm is, binds
//! loopback by default and says so once. Asynchronous call ids are random.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferry_tests::{ferry_bin, guests, Node, NodeOptions, Reply};
use serde_json::json;

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef012";

fn tokens_config(dir: &Path, guard_operations: bool) -> Result<PathBuf> {
    let path = dir.join("ferry.toml");
    std::fs::write(
        &path,
        format!(
            "[auth]\nguard_operations = {guard_operations}\ntokens = {{ alice = \"{ALICE}\", bob = \"{BOB}\" }}\n"
        ),
    )?;
    Ok(path)
}

/// A node with alice's and bob's tokens (and no functions loaded).
fn node_with_tokens(dir: &Path, guard_operations: bool) -> Result<Node> {
    let config = tokens_config(dir, guard_operations)?;
    Node::start(NodeOptions {
        extra: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A 401 or 403 carries a one-line reason; a 401 names the scheme.
fn check_refusal(reply: &Reply, status: u16, what: &str) -> Result<()> {
    ensure!(
        reply.status == status,
        "{what}: {} {} (wanted {status})",
        reply.status,
        reply.text()
    );
    let text = reply.text();
    ensure!(
        !text.is_empty() && !text.trim_end().contains('\n'),
        "{what}: reason {text:?} is not one line"
    );
    if status == 401 {
        ensure!(
            reply
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{what}: 401 without WWW-Authenticate: Bearer"
        );
    }
    Ok(())
}

fn poll_until_done(node: &Node, id: u64, token: &str) -> Result<Reply> {
    let started = Instant::now();
    loop {
        let reply = node.send(
            "POST",
            &node.http,
            "/f/",
            &[("Authorization", &bearer(token))],
            json!({"status": true, "id": id}).to_string().as_bytes(),
        )?;
        if reply.text() != "RUNNING" {
            return Ok(reply);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("call {id} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_route_that_names_a_user_wants_that_users_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node_with_tokens(dir.path(), false)?;
    let echo = std::fs::read(guests()?.join("tests/test/echo.wasm"))?;
    let call = json!({"user": "alice", "function": "echo", "input_data": "hi"}).to_string();
    // (method, port, path, body, alice's answer), in an order where each
    // step finds what the ones before it made.
    let cases: Vec<(&str, &str, &str, &[u8], u16)> = vec![
        ("PUT", &node.upload, "/f/alice/echo", &echo, 200),
        ("GET", &node.upload, "/f/alice/echo", b"", 200),
        ("POST", &node.http, "/f/", call.as_bytes(), 200),
        ("PUT", &node.upload, "/s/alice/state", b"state bytes", 200),
        ("GET", &node.upload, "/s/alice/state", b"", 200),
        ("PUT", &node.upload, "/o/alice/doc", b"alice's object", 200),
        ("GET", &node.upload, "/o/alice/doc", b"", 200),
        ("GET", &node.upload, "/o/alice/", b"", 200),
        ("GET", &node.upload, "/p/alice/doc", b"", 200),
        ("DELETE", &node.upload, "/o/alice/doc", b"", 200),
    ];
    for (method, port, path, body, status) in cases {
        let what = format!("{method} {path}");
        let send = |headers: &[(&str, &str)]| node.send(method, port, path, headers, body);
        check_refusal(&send(&[])?, 401, &format!("{what} without a token"))?;
        check_refusal(
            &send(&[("Authorization", &bearer("nobody's-token-0123456789"))])?,
            401,
            &format!("{what} with an invalid token"),
        )?;
        check_refusal(
            &send(&[("Authorization", "Basic YWxpY2U6c2VjcmV0")])?,
            401,
            &format!("{what} with Basic credentials"),
        )?;
        check_refusal(
            &send(&[("Authorization", &bearer(BOB))])?,
            403,
            &format!("{what} with bob's token"),
        )?;
        let reply = send(&[("Authorization", &bearer(ALICE))])?;
        ensure!(
            reply.status == status,
            "{what} with alice's token: {} {}",
            reply.status,
            reply.text()
        );
        if path == "/f/" {
            ensure!(reply.text() == "hi", "the call answered {:?}", reply.text());
        }
    }

    // Bob's refused writes changed nothing of alice's; his own namespace is his.
    let alice_token = bearer(ALICE);
    let alice = [("Authorization", alice_token.as_str())];
    ensure!(
        node.send("PUT", &node.upload, "/o/alice/kept", &alice, b"v1")?
            .status
            == 200
    );
    let bob = bearer(BOB);
    let overwrite = node.send(
        "PUT",
        &node.upload,
        "/o/alice/kept",
        &[("Authorization", &bob)],
        b"bob's",
    )?;
    check_refusal(&overwrite, 403, "bob overwriting alice's object")?;
    ensure!(
        node.send("GET", &node.upload, "/o/alice/kept", &alice, b"")?
            .text()
            == "v1"
    );
    let own = node.send(
        "PUT",
        &node.upload,
        "/o/bob/mine",
        &[("Authorization", &bob)],
        b"x",
    )?;
    ensure!(own.status == 200, "bob's own object: {}", own.status);
    // Scheme names are case-insensitive (RFC 7235).
    let lower = node.send(
        "GET",
        &node.upload,
        "/o/bob/mine",
        &[("Authorization", &format!("bearer {BOB}"))],
        b"",
    )?;
    ensure!(lower.status == 200, "lower-case scheme: {}", lower.status);
    Ok(())
}

#[test]
fn a_status_poll_sees_only_the_callers_own_calls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node_with_tokens(dir.path(), false)?;
    let echo = std::fs::read(guests()?.join("tests/test/echo.wasm"))?;
    let alice = bearer(ALICE);
    let upload = node.send(
        "PUT",
        &node.upload,
        "/f/alice/echo",
        &[("Authorization", &alice)],
        &echo,
    )?;
    ensure!(upload.status == 200, "upload: {}", upload.text());
    let call =
        json!({"user": "alice", "function": "echo", "input_data": "secret result", "async": true});
    let reply = node.send(
        "POST",
        &node.http,
        "/f/",
        &[("Authorization", &alice)],
        call.to_string().as_bytes(),
    )?;
    ensure!(reply.status == 200, "async call: {}", reply.text());
    let id: u64 = reply.text().parse().context("the call id")?;
    let done = poll_until_done(&node, id, ALICE)?;
    ensure!((done.status, done.text().as_str()) == (200, "SUCCESS: secret result"));

    let poll = |headers: &[(&str, &str)], id: u64| {
        node.send(
            "POST",
            &node.http,
            "/f/",
            headers,
            json!({"status": true, "id": id}).to_string().as_bytes(),
        )
    };
    // Bob gets what an unknown id gets: no sign that the call exists.
    let by_bob = poll(&[("Authorization", &bearer(BOB))], id)?;
    ensure!(
        (by_bob.status, by_bob.text()) == (404, format!("No call {id}")),
        "bob polling alice's call: {} {}",
        by_bob.status,
        by_bob.text()
    );
    let unknown = poll(&[("Authorization", &alice)], id ^ 1)?;
    ensure!(unknown.status == 404, "an unknown id: {}", unknown.status);
    check_refusal(&poll(&[], id)?, 401, "a poll without a token")?;
    // Alice still reads it.
    ensure!(poll(&[("Authorization", &alice)], id)?.text() == "SUCCESS: secret result");
    // Bob cannot start a call as alice either.
    let as_alice = node.send(
        "POST",
        &node.http,
        "/f/",
        &[("Authorization", &bearer(BOB))],
        call.to_string().as_bytes(),
    )?;
    check_refusal(&as_alice, 403, "bob invoking as alice")?;
    Ok(())
}

#[test]
fn operations_are_open_unless_guard_operations_is_set() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let open = node_with_tokens(dir.path(), false)?;
    for (port, path) in [
        (&open.http, "/healthz"),
        (&open.http, "/metrics"),
        (&open.upload, "/ping"),
    ] {
        let reply = open.send("GET", port, path, &[], b"")?;
        ensure!(reply.status == 200, "{path} unguarded: {}", reply.status);
    }
    let guarded_dir = tempfile::tempdir()?;
    let guarded = node_with_tokens(guarded_dir.path(), true)?;
    for (port, path) in [
        (&guarded.http, "/healthz"),
        (&guarded.http, "/metrics"),
        (&guarded.upload, "/ping"),
    ] {
        check_refusal(
            &guarded.send("GET", port, path, &[], b"")?,
            401,
            &format!("{path} guarded, no token"),
        )?;
        check_refusal(
            &guarded.send(
                "GET",
                port,
                path,
                &[("Authorization", &bearer("nobody's-token-0123456789"))],
                b"",
            )?,
            401,
            &format!("{path} guarded, an invalid token"),
        )?;
        // Any user's token will do.
        let reply = guarded.send("GET", port, path, &[("Authorization", &bearer(BOB))], b"")?;
        ensure!(reply.status == 200, "{path} guarded, bob: {}", reply.status);
    }
    Ok(())
}

/// Starts `ferry up` without `--bind`, logging at WARN into a file; returns
/// the child, its ready file's addresses and its log.
fn start_plain(
    dir: &Path,
    config: Option<&Path>,
) -> Result<(std::process::Child, String, String, PathBuf)> {
    let ready = dir.join("ready");
    let log = dir.join("stderr");
    let mut command = Command::new(ferry_bin());
    command
        .args([
            "up",
            "--http-port",
            "0",
            "--upload-port",
            "0",
            "--cores",
            "1",
        ])
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--ready-file")
        .arg(&ready)
        .env("FERRY_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command.spawn().context("starting ferry up")?;
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            let json: serde_json::Value = serde_json::from_str(&text)?;
            let field = |k: &str| json[k].as_str().map(str::to_owned).context("ready file");
            return Ok((child, field("http")?, field("upload")?, log));
        }
        if let Some(status) = child.try_wait()? {
            bail!("ferry exited during start-up: {status}");
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            bail!("ferry did not become ready within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn without_tokens_the_node_is_open_on_loopback_and_says_so_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut child, http, upload, log) = start_plain(dir.path(), None)?;
    let result = (|| -> Result<()> {
        ensure!(http.starts_with("127.0.0.1:"), "open node bound {http}");
        ensure!(upload.starts_with("127.0.0.1:"), "open node bound {upload}");
        // As in Faasm: no token needed, and one sent is ignored.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let put = agent
            .put(format!("http://{upload}/o/anyone/k"))
            .send(&b"v"[..])?;
        ensure!(put.status() == 200, "open PUT: {}", put.status());
        let mut get = agent
            .get(format!("http://{upload}/o/anyone/k"))
            .header("Authorization", "Bearer whatever-0123456789")
            .call()?;
        ensure!(get.status() == 200 && get.body_mut().read_to_string()? == "v");
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result?;
    let mut text = String::new();
    std::fs::File::open(&log)?.read_to_string(&mut text)?;
    let warnings = text
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("no authentication"))
        .count();
    ensure!(
        warnings == 1,
        "{warnings} warnings of no authentication in:\n{text}"
    );

    // With tokens the default is every address (and no such warning).
    let dir = tempfile::tempdir()?;
    let config = tokens_config(dir.path(), false)?;
    let (mut child, http, _upload, log) = start_plain(dir.path(), Some(&config))?;
    let _ = child.kill();
    let _ = child.wait();
    ensure!(
        http.starts_with("0.0.0.0:"),
        "a node with tokens bound {http}"
    );
    let text = std::fs::read_to_string(&log)?;
    ensure!(!text.contains("no authentication"), "{text}");
    Ok(())
}

#[test]
fn async_call_ids_are_random_not_counted() -> Result<()> {
    let node = Node::with_functions()?;
    let mut ids = Vec::new();
    for i in 0..16 {
        let reply = node.invoke(
            json!({"user": "test", "function": "echo", "input_data": format!("{i}"), "async": true}),
        )?;
        ensure!(reply.status == 200, "{}", reply.text());
        ids.push(reply.text().parse::<u64>()?);
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    ensure!(sorted.len() == ids.len(), "ids repeat: {ids:?}");
    // Counted ids sit next to each other; 16 random 53-bit ones never do.
    ensure!(
        sorted.windows(2).all(|w| w[1] - w[0] > 1_000_000),
        "ids close together: {sorted:?}"
    );
    ensure!(
        ids.iter().any(|id| *id > u64::from(u32::MAX)),
        "every id fits 32 bits: {ids:?}"
    );
    ensure!(
        ids.iter().all(|id| *id < 1 << 53),
        "an id past JSON's safe integers: {ids:?}"
    );
    for (i, id) in ids.iter().enumerate() {
        let started = Instant::now();
        loop {
            let status = node.invoke(json!({"status": true, "id": id}))?;
            if status.text() != "RUNNING" {
                ensure!(
                    status.text() == format!("SUCCESS: {i}"),
                    "{}",
                    status.text()
                );
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("call {id} still running after 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

#[test]
fn the_cli_sends_the_token_from_a_flag_or_ferry_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node_with_tokens(dir.path(), false)?;
    let port = |addr: &str| addr.rsplit(':').next().unwrap_or_default().to_owned();
    let ferry = |args: &[&str], token_env: Option<&str>| -> Result<std::process::Output> {
        let mut command = Command::new(ferry_bin());
        command
            .args(args)
            .args(["--host", "127.0.0.1", "--http-port"])
            .arg(port(&node.http))
            .arg("--upload-port")
            .arg(port(&node.upload))
            .env_remove("FERRY_TOKEN");
        if let Some(token) = token_env {
            command.env("FERRY_TOKEN", token);
        }
        Ok(command.output()?)
    };
    let file = dir.path().join("value");
    std::fs::write(&file, "from the cli")?;
    let file = file.display().to_string();
    let put = ["object", "put", "alice", "cli key", file.as_str()];

    let refused = ferry(&put, None)?;
    ensure!(refused.status.code() == Some(1));
    ensure!(String::from_utf8_lossy(&refused.stderr).contains("HTTP 401"));
    let forbidden = ferry(&put, Some(BOB))?;
    ensure!(String::from_utf8_lossy(&forbidden.stderr).contains("HTTP 403"));

    let with_flag = [&put[..], &["--token", ALICE]].concat();
    let out = ferry(&with_flag, None)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ferry(&["object", "get", "alice", "cli key"], Some(ALICE))?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.stdout == b"from the cli");
    Ok(())
}
