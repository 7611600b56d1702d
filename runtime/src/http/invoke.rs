//! The invocation API (port 8080): Faasm's JSON message, any path; plus
//! `GET /healthz` and `GET /metrics`. With tokens configured, the token is
//! checked before the body is read and must be the named user's; a status
//! poll sees only the caller's own calls.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;

use super::auth;
use super::body::read_body;
use super::reply::{busy, busy_because, text, Reply};
use crate::budget::Share;
use crate::exec::{CallResult, CallSpec, Entry};
use crate::invocation::{AsyncStartError, AsyncStatus};
use crate::limits;
use crate::shard::LocalShard;

/// Faasm's message, the fields ferry reads. Unknown fields are ignored;
/// `null` counts as missing. Public (hidden) only for [`parse_message`].
#[doc(hidden)]
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Message {
    user: Option<String>,
    function: Option<String>,
    input_data: Option<String>,
    input_base64: Option<String>,
    #[serde(rename = "async")]
    is_async: Option<bool>,
    forbid_ndp: Option<bool>,
    cmdline: Option<String>,
    status: Option<bool>,
    id: Option<u64>,
    func_ptr: Option<u32>,
    timeout_ms: Option<u64>,
}

pub async fn handle(shard: Rc<LocalShard>, request: Request<Incoming>) -> Reply {
    let tokens = shard.node.config.auth.as_ref();
    if request.method() == Method::GET && matches!(request.uri().path(), "/healthz" | "/metrics") {
        if let Err(reply) = auth::check_operations(tokens, request.headers()) {
            return reply;
        }
    }
    if request.method() == Method::GET {
        match request.uri().path() {
            "/healthz" => {
                return if shard.node.ready.load(Ordering::Acquire) {
                    text(StatusCode::OK, "OK")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "Starting")
                };
            }
            "/metrics" => {
                let node = &shard.node;
                let buffers = &node.http_buffers;
                node.metrics
                    .http_buffer_bytes
                    .set(buffers.held_bytes() as i64);
                node.metrics
                    .http_buffer_bytes_max
                    .set(buffers.max_bytes() as i64);
                let mut reply = text(StatusCode::OK, node.metrics.render());
                reply.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                return reply;
            }
            _ => {}
        }
    }
    // Who the caller is, before a byte of the body is read.
    let caller: Option<Rc<str>> = match tokens {
        None => None,
        Some(tokens) => match auth::caller(tokens, request.headers()) {
            Ok(user) => Some(user.into()),
            Err(reply) => return reply,
        },
    };
    // The body's bytes count against the node's HTTP buffers until the
    // call is answered (its input lives as long).
    let (body, share) = match read_body(&shard, request, limits::JSON_BODY_BYTES_MAX).await {
        Ok(read) => read,
        Err(reply) => return reply,
    };
    let message = match parse_message(&body) {
        Ok(message) => message,
        Err(reason) => return text(StatusCode::BAD_REQUEST, reason),
    };
    if message.status == Some(true) {
        return status(&shard, message.id, caller.as_deref());
    }
    invoke(shard, message, caller.as_deref(), share).await
}

/// The request body as Faasm's message, or the reason it is not one (the
/// body of a 400). Pure, so the fuzz target (`fuzz/fuzz_targets/invoke.rs`)
/// drives exactly what a request does.
#[doc(hidden)]
pub fn parse_message(body: &[u8]) -> Result<Message, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("Empty request".to_owned());
    }
    serde_json::from_slice(body).map_err(|error| format!("Invalid JSON message: {error}"))
}

/// A poll of `id` by `caller` (None on a node without tokens). Another
/// user's call answers as an unknown id does, 404: a 403 would confirm
/// that the id is someone's live call.
fn status(shard: &LocalShard, id: Option<u64>, caller: Option<&str>) -> Reply {
    let Some(id) = id else {
        return text(StatusCode::BAD_REQUEST, "Status request without an id");
    };
    match shard.node.async_calls.status(id, caller) {
        None => text(StatusCode::NOT_FOUND, format!("No call {id}")),
        Some(AsyncStatus::Running) => text(StatusCode::OK, "RUNNING"),
        Some(AsyncStatus::Done(result)) if succeeded(&result) => {
            let mut body = b"SUCCESS: ".to_vec();
            body.extend_from_slice(&result.output);
            text(StatusCode::OK, body)
        }
        Some(AsyncStatus::Done(result)) => {
            let mut body = b"FAILED: ".to_vec();
            body.extend_from_slice(&failure_body(&result));
            text(StatusCode::INTERNAL_SERVER_ERROR, body)
        }
    }
}

async fn invoke(
    shard: Rc<LocalShard>,
    message: Message,
    caller: Option<&str>,
    share: Share,
) -> Reply {
    let user = message.user.unwrap_or_default();
    let function_name = message.function.unwrap_or_default();
    if user.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Empty user");
    }
    if caller.is_some_and(|caller| caller != user) {
        return auth::forbidden(&user);
    }
    if function_name.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Empty function");
    }
    let input = match (message.input_base64, message.input_data) {
        (Some(encoded), _) => {
            match base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes()) {
                Ok(bytes) => bytes,
                Err(error) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("input_base64 is not base64: {error}"),
                    )
                }
            }
        }
        (None, Some(data)) => data.into_bytes(),
        (None, None) => Vec::new(),
    };
    let limits = &shard.node.config.limits;
    if input.len() > limits.input_bytes_max {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Input of {} bytes exceeds the cap of {} bytes",
                input.len(),
                limits.input_bytes_max
            ),
        );
    }
    let cmdline_len = message.cmdline.as_ref().map_or(0, String::len);
    if cmdline_len > crate::limits::CMDLINE_BYTES_MAX {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "cmdline of {cmdline_len} bytes exceeds the cap of {} bytes",
                crate::limits::CMDLINE_BYTES_MAX
            ),
        );
    }
    let Some(function) = shard.node.registry.get(&user, &function_name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("No function {user}/{function_name}"),
        );
    };
    let quota = match shard.node.quotas.start_call(&user) {
        Ok(ticket) => ticket,
        Err(refused) => {
            shard
                .node
                .metrics
                .calls
                .with_label_values(&[&user, &function_name, "quota"])
                .inc();
            return busy_because(refused.to_string());
        }
    };
    let Some(admission) = shard.try_admit() else {
        shard
            .node
            .metrics
            .calls
            .with_label_values(&[&user, &function_name, "busy"])
            .inc();
        return busy();
    };
    let timeout_ms = message
        .timeout_ms
        .unwrap_or(limits.call_ms_max)
        .min(limits.call_ms_max);
    let id = shard.node.call_ids.next();
    let spec = CallSpec {
        id,
        user: user.into(),
        function: function_name.into(),
        input: input.into(),
        cmdline: message.cmdline.unwrap_or_default(),
        entry: message.func_ptr.map_or(Entry::Start, Entry::TableIndex),
        forbid_ndp: message.forbid_ndp.unwrap_or(false),
        deadline: Instant::now() + Duration::from_millis(timeout_ms),
        depth: 0,
    };
    if message.is_async == Some(true) {
        // Polled by its own random id, not the call's sequential one.
        let owner = caller.map(|_| spec.user.clone());
        let async_id = match shard.node.async_calls.start(owner) {
            Ok(async_id) => async_id,
            Err(AsyncStartError::Full) => return busy(),
            Err(AsyncStartError::Random(error)) => {
                tracing::error!(%error, "drawing an asynchronous call id");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Drawing a call id: {error}"),
                );
            }
        };
        let runner = shard.clone();
        glommio::spawn_local(async move {
            let _working = super::io::Working::begin();
            let result = runner.invoke(function, spec).await;
            runner.node.async_calls.finish(async_id, result);
            drop((admission, quota, share));
        })
        .detach();
        return text(StatusCode::OK, async_id.to_string());
    }
    let result = shard.invoke(function, spec).await;
    drop((admission, quota, share));
    if succeeded(&result) {
        text(StatusCode::OK, result.output)
    } else {
        text(StatusCode::INTERNAL_SERVER_ERROR, failure_body(&result))
    }
}

fn succeeded(result: &CallResult) -> bool {
    result.failure.is_none() && result.return_code == 0
}

/// HTTP.md: a trap (deadline, memory cap) gives `Call failed (return
/// value=1)` and a line with the reason; a non-zero return gives the
/// output if the guest set one.
fn failure_body(result: &CallResult) -> Vec<u8> {
    match &result.failure {
        Some(reason) => format!("Call failed (return value=1)\n{reason}").into_bytes(),
        None if result.output_set => result.output.clone(),
        None => format!("Call failed (return value={})", result.return_code).into_bytes(),
    }
}
