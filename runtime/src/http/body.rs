//! Reading request bodies: admitted against the node's HTTP buffers
//! before a byte is read, bounded in size, cut off when they stall.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::reply::{buffers_busy, text, BodyError, Reply};
use crate::budget::Share;
use crate::limits;
use crate::shard::LocalShard;

/// The body's length as its `Content-Length` gives it; None for a
/// chunked body.
pub fn declared_len(request: &Request<Incoming>) -> Option<u64> {
    hyper::body::Body::size_hint(request.body()).exact()
}

/// Reads a request body of at most `max` bytes, after taking what it may
/// hold from the node's HTTP buffers (refused: 503, before a byte is
/// read); `Err` is the reply to send. The share is the caller's to hold
/// while the bytes live.
pub async fn read_body(
    shard: &LocalShard,
    request: Request<Incoming>,
    max: usize,
) -> Result<(Bytes, Share), Reply> {
    let declared = declared_len(&request);
    if let Some(len) = declared.filter(|len| *len > max as u64) {
        return Err(too_large(len, max));
    }
    let share = shard
        .node
        .http_buffers
        .take(declared.unwrap_or(max as u64))
        .map_err(buffers_busy)?;
    let mut body = BodyReader::new(request, max);
    let mut collected = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(data) = body.next().await? {
        if collected.is_empty() && declared == Some(data.len() as u64) {
            return Ok((data, share)); // one frame: no copy
        }
        collected.extend_from_slice(&data);
    }
    Ok((collected.freeze(), share))
}

fn too_large(len: u64, max: usize) -> Reply {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body of {len} bytes exceeds the cap of {max} bytes"),
    )
}

/// A request body read frame by frame, at most `max` bytes, with a stall
/// timeout: a client that stops sending mid-body is cut off (a stalled
/// body held its connection, and what it had sent, for ever).
pub struct BodyReader {
    body: Limited<Incoming>,
    max: usize,
}

impl BodyReader {
    pub fn new(request: Request<Incoming>, max: usize) -> BodyReader {
        BodyReader {
            body: Limited::new(request.into_body(), max),
            max,
        }
    }

    /// The next bytes of the body; None at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Reply> {
        let stall = std::time::Duration::from_millis(limits::BODY_STALL_MS_MAX);
        loop {
            let frame = glommio::timer::timeout(stall, async { Ok(self.body.frame().await) })
                .await
                .map_err(|_| {
                    text(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "The request body stalled: nothing arrived for {} ms",
                            limits::BODY_STALL_MS_MAX
                        ),
                    )
                })?;
            match frame {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
                Some(Err(error)) => return Err(body_error(error, self.max)),
            }
        }
    }
}

fn body_error(error: BodyError, max: usize) -> Reply {
    if error.is::<http_body_util::LengthLimitError>() {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body exceeds the cap of {max} bytes"),
        )
    } else {
        text(
            StatusCode::BAD_REQUEST,
            format!("Reading the request body: {error}"),
        )
    }
}
