//! Building answers: plain-text replies and the 503s of a busy node; the
//! one place a body type for answers is named.

use std::pin::Pin;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};

use crate::budget::Refused;

/// An answer's body: whole ([`text`]) or streamed in parts (object GETs).
/// Not `Send`: a streamed part is read by this shard's files and stores.
pub type Body = Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = BodyError>>>;
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub type Reply = Response<Body>;

/// A plain-text reply.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let body: Body = Box::pin(Full::new(body.into()).map_err(|never| match never {}));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

pub fn busy() -> Reply {
    busy_because("Busy")
}

/// 503 with `Retry-After` and the reason.
pub fn busy_because(reason: impl Into<Bytes>) -> Reply {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, reason);
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    response
}

/// The node's HTTP buffers are spent: nothing of this request was read.
pub fn buffers_busy(refused: Refused) -> Reply {
    busy_because(format!(
        "Busy: requests in flight hold {} of the node's {} bytes of HTTP buffers (limits.http_buffer_bytes_max)",
        refused.held_bytes, refused.max_bytes
    ))
}
