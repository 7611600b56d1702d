//! The invocation API (port 8080): Faasm's JSON message, any path; plus
//! `GET /healthz` and `GET /metrics`.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;

use super::{busy, read_body, text, Reply};
use crate::exec::{CallResult, CallSpec, Entry};
use crate::invocation::AsyncStatus;
use crate::limits;
use crate::shard::LocalShard;

/// Faasm's message, the fields ferry reads. Unknown fields are ignored;
/// `null` counts as missing.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message {
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
                let mut reply = text(StatusCode::OK, shard.node.metrics.render());
                reply.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                return reply;
            }
            _ => {}
        }
    }
    let body = match read_body(request, limits::JSON_BODY_BYTES_MAX).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return text(StatusCode::BAD_REQUEST, "Empty request");
    }
    let message: Message = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Invalid JSON message: {error}"),
            )
        }
    };
    if message.status == Some(true) {
        return status(&shard, message.id);
    }
    invoke(shard, message).await
}

fn status(shard: &LocalShard, id: Option<u64>) -> Reply {
    let Some(id) = id else {
        return text(StatusCode::BAD_REQUEST, "Status request without an id");
    };
    let found = u32::try_from(id)
        .ok()
        .and_then(|id| shard.node.async_calls.status(id));
    match found {
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

async fn invoke(shard: Rc<LocalShard>, message: Message) -> Reply {
    let user = message.user.unwrap_or_default();
    let function_name = message.function.unwrap_or_default();
    if user.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Empty user");
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
    let Some(function) = shard.node.registry.get(&user, &function_name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("No function {user}/{function_name}"),
        );
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
        if shard.node.async_calls.start(id).is_err() {
            return busy();
        }
        let runner = shard.clone();
        glommio::spawn_local(async move {
            let result = runner.invoke(function, spec).await;
            runner.node.async_calls.finish(id, result);
            drop(admission);
        })
        .detach();
        return text(StatusCode::OK, id.to_string());
    }
    let result = shard.invoke(function, spec).await;
    drop(admission);
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
