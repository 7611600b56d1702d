//! The upload API (port 8002): functions (`/f/`), state (`/s/`), objects
//! (`/o/`), placement (`/p/`) and `/ping`. With tokens configured, every
//! route that names a user needs that user's token, checked before the
//! body is read.

use std::rc::Rc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::auth;
use super::body::{declared_len, read_body, BodyReader};
use super::reply::{buffers_busy, text, Body, BodyError, Reply};
use crate::budget::{PutTicket, QuotaError, Share};
use crate::config::check_name;
use crate::limits;
use crate::objects::{ObjectError, Objects, OwnedReader};
use crate::registry::UploadError;
use crate::shard::LocalShard;
use crate::state_store::{self, StateWriteError};

pub async fn handle(shard: Rc<LocalShard>, request: Request<Incoming>) -> Reply {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let tokens = shard.node.config.auth.as_ref();
    if path == "/ping" {
        if let Err(reply) = auth::check_operations(tokens, request.headers()) {
            return reply;
        }
        return text(StatusCode::OK, "PONG");
    }
    let Some((kind, rest)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return text(StatusCode::NOT_FOUND, format!("No route {path}"));
    };
    let (user, name) = rest.split_once('/').unwrap_or((rest, ""));
    let user = match percent_decode(user).map(String::from_utf8) {
        Some(Ok(user)) if check_name("user", &user).is_ok() => user,
        _ => return text(StatusCode::BAD_REQUEST, format!("Invalid user in {path}")),
    };
    let Some(key) = percent_decode(name) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("Invalid percent-encoding in {path}"),
        );
    };
    if matches!(kind, "f" | "s" | "o" | "p") {
        if let Err(reply) = auth::check_user(tokens, request.headers(), &user) {
            return reply;
        }
    }
    match (kind, method) {
        ("p", Method::GET) => placement(&shard, &user, &key).await,
        ("f", Method::PUT) => upload_function(&shard, request, &user, &key).await,
        ("f", Method::GET) => download_function(&shard, &user, &key).await,
        ("s", Method::PUT) => put_object(&shard, Store::State, request, &user, &key).await,
        ("s", Method::GET) => get_object(shard, Store::State, &request, &user, &key).await,
        ("o", Method::PUT) => put_object(&shard, Store::Objects, request, &user, &key).await,
        ("o", Method::GET) if key.is_empty() => list_objects(shard.objects(), &user).await,
        ("o", Method::GET) => get_object(shard, Store::Objects, &request, &user, &key).await,
        ("o", Method::DELETE) => {
            // The user's object bytes are summed afresh at their next put.
            shard.node.quotas.forget(&user);
            delete_object(shard.objects(), &user, &key).await
        }
        ("f" | "s" | "o" | "p", method) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on /{kind}/"),
        ),
        _ => text(StatusCode::NOT_FOUND, format!("No route {path}")),
    }
}

async fn upload_function(
    shard: &LocalShard,
    request: Request<Incoming>,
    user: &str,
    name: &[u8],
) -> Reply {
    let Ok(name) = std::str::from_utf8(name) else {
        return text(StatusCode::BAD_REQUEST, "Function name is not UTF-8");
    };
    let (wasm, _share) = match read_body(shard, request, limits::MODULE_BYTES_MAX).await {
        Ok((body, share)) => (body.to_vec(), share),
        Err(reply) => return reply,
    };
    let node = &shard.node;
    match node.registry.upload(&node.executor, user, name, wasm).await {
        Ok(function) => {
            node.metrics.uploads.with_label_values(&["ok"]).inc();
            tracing::info!(%user, function = %name, "function uploaded");
            // Functions are cluster-wide: every node can run this one once
            // the answer is out.
            crate::peers::propagate(shard, &function).await;
            text(StatusCode::OK, "Function upload complete")
        }
        Err(UploadError::Invalid(reason)) => {
            node.metrics.uploads.with_label_values(&["invalid"]).inc();
            text(
                StatusCode::BAD_REQUEST,
                format!("Invalid function {user}/{name}: {reason}"),
            )
        }
        Err(error @ UploadError::Internal(_)) => {
            node.metrics.uploads.with_label_values(&["error"]).inc();
            tracing::error!(%user, function = %name, %error, "upload failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        }
    }
}

/// **ferry**: which storage node holds an object (and, on Ceph, its
/// placement group and primary OSD), as this node's placement answers.
async fn placement(shard: &LocalShard, user: &str, key: &[u8]) -> Reply {
    let answer = match &shard.placement {
        None => serde_json::json!({ "node": shard.node.config.name }),
        Some(placement) => match placement.locate(user, key).await {
            Ok(location) => {
                let mut answer = serde_json::json!({ "node": location.node });
                if let Some(ceph) = &location.ceph {
                    answer["pg"] = serde_json::json!(&*ceph.pg);
                    answer["primary_osd"] = serde_json::json!(ceph.primary_osd);
                    answer["osdmap_epoch"] = serde_json::json!(ceph.epoch);
                }
                answer
            }
            Err(error) => return storage_error(ObjectError::Storage(error)),
        },
    };
    let mut reply = text(StatusCode::OK, answer.to_string());
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    reply
}

async fn download_function(shard: &LocalShard, user: &str, name: &[u8]) -> Reply {
    let name = String::from_utf8_lossy(name).into_owned();
    // A module is up to 256 MiB on disk: read it off the shard's thread.
    let node = shard.node.clone();
    let (user_owned, name_owned) = (user.to_owned(), name.clone());
    let read = glommio::executor()
        .spawn_blocking(move || node.registry.wasm(&user_owned, &name_owned))
        .await;
    match read {
        Ok(Some(wasm)) => {
            let mut reply = text(StatusCode::OK, wasm);
            reply.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/wasm"),
            );
            reply
        }
        Ok(None) => text(StatusCode::NOT_FOUND, format!("No function {user}/{name}")),
        Err(error) => text(StatusCode::BAD_REQUEST, format!("{error:#}")),
    }
}

/// Which of a shard's stores a route reaches.
#[derive(Clone, Copy)]
enum Store {
    Objects,
    State,
}

impl Store {
    fn of(self, shard: &LocalShard) -> &Objects {
        match self {
            Store::Objects => shard.objects(),
            Store::State => shard.state(),
        }
    }
}

/// An object PUT: admitted (HTTP buffers, the user's quota) before a byte
/// of the body is read, then written on as each part arrives, so a 1 GiB
/// object holds one part in memory, not 1 GiB.
async fn put_object(
    shard: &LocalShard,
    which: Store,
    request: Request<Incoming>,
    user: &str,
    key: &[u8],
) -> Reply {
    if key.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Empty key");
    }
    let store = which.of(shard);
    let declared = declared_len(&request);
    if let Some(total_bytes) = declared.filter(|n| *n > limits::HTTP_OBJECT_CHUNK_BYTES as u64) {
        return put_streamed(shard, which, request, user, key, total_bytes).await;
    }
    // One part at most (or chunked, whose length is known only at its end,
    // which a streamed write needs at its start): gathered whole, written
    // in one I/O or one transport message.
    let max = declared.map_or(limits::OBJECT_BODY_UNSIZED_BYTES_MAX, |n| n as usize);
    let (body, _share) = match read_body(shard, request, max).await {
        Ok(read) => read,
        Err(reply) if declared.is_none() && reply.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return text(
                StatusCode::LENGTH_REQUIRED,
                format!(
                    "An object body over {} bytes needs a Content-Length",
                    limits::OBJECT_BODY_UNSIZED_BYTES_MAX
                ),
            )
        }
        Err(reply) => return reply,
    };
    let ticket = match admit(shard, which, user, key, body.len() as u64).await {
        Ok(ticket) => ticket,
        Err(reply) => return reply,
    };
    let put = match which {
        // Every write of a state value goes through state_store (its
        // apply lock, on whichever node stores it).
        Store::State => {
            let locks = shard.node.executor.state_locks();
            state_store::put(store, locks, user, key, &body)
                .await
                .map_err(StateWriteError::into_object_error)
        }
        Store::Objects => store.put(user, key, &body).await,
    };
    landed(put, ticket)
}

/// A PUT of more than one part, written on part by part.
async fn put_streamed(
    shard: &LocalShard,
    which: Store,
    request: Request<Incoming>,
    user: &str,
    key: &[u8],
    total_bytes: u64,
) -> Reply {
    if matches!(which, Store::State) && total_bytes > limits::STATE_VALUE_BYTES_MAX as u64 {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "State value of {total_bytes} bytes exceeds the cap of {} bytes",
                limits::STATE_VALUE_BYTES_MAX
            ),
        );
    }
    if total_bytes > limits::OBJECT_BODY_BYTES_MAX as u64 {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Object body of {total_bytes} bytes exceeds the cap of {} bytes",
                limits::OBJECT_BODY_BYTES_MAX
            ),
        );
    }
    let store = which.of(shard);
    let ticket = match admit(shard, which, user, key, total_bytes).await {
        Ok(ticket) => ticket,
        Err(reply) => return reply,
    };
    let part_bytes = limits::HTTP_OBJECT_CHUNK_BYTES;
    // A RADOS store gathers a streamed write whole before it sends it.
    let held_bytes = if store.gathers_writes() {
        total_bytes
    } else {
        part_bytes as u64
    };
    let _share = match shard.node.http_buffers.take(held_bytes) {
        Ok(share) => share,
        Err(refused) => return buffers_busy(refused),
    };
    let mut body = BodyReader::new(request, total_bytes as usize);
    let mut writer = match store.writer(user, key, total_bytes).await {
        Ok(writer) => writer,
        Err(error) => return storage_error(error),
    };
    let mut part = bytes::BytesMut::with_capacity(part_bytes);
    loop {
        // An error returns at once; the writer aborts as it drops.
        let next = match body.next().await {
            Ok(next) => next,
            Err(reply) => return reply,
        };
        let last = next.is_none();
        let mut data = next.as_deref().unwrap_or_default();
        while !data.is_empty() || (last && !part.is_empty()) {
            let n = data.len().min(part_bytes - part.len());
            part.extend_from_slice(&data[..n]);
            data = &data[n..];
            if part.len() == part_bytes || (last && data.is_empty()) {
                if let Err(error) = writer.write(&part).await {
                    return storage_error(error);
                }
                part.clear();
            }
        }
        if last {
            break;
        }
    }
    // A state value is published under its apply lock.
    let _apply = match which {
        Store::State => {
            let locks = shard.node.executor.state_locks();
            match state_store::publish_lock(store, locks, user, key).await {
                Ok(guard) => guard,
                Err(error) => return storage_error(error.into_object_error()),
            }
        }
        Store::Objects => None,
    };
    landed(writer.finish().await, ticket)
}

/// A put's answer; one that landed counts against the user's quota.
fn landed(put: Result<(), ObjectError>, ticket: PutTicket) -> Reply {
    match put {
        Ok(()) => {
            ticket.done();
            text(StatusCode::OK, "OK")
        }
        Err(error) => storage_error(error),
    }
}

/// The user's object quota (objects only; state is Faasm's working set).
async fn admit(
    shard: &LocalShard,
    which: Store,
    user: &str,
    key: &[u8],
    bytes: u64,
) -> Result<PutTicket, Reply> {
    if matches!(which, Store::State) {
        return Ok(PutTicket::unlimited());
    }
    match shard
        .node
        .quotas
        .admit_put(shard.objects(), user, key, bytes)
        .await
    {
        Ok(ticket) => Ok(ticket),
        Err(error @ QuotaError::ObjectBytes { .. }) => {
            Err(text(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()))
        }
        Err(error) => {
            tracing::warn!(%error, "object quota");
            Err(text(StatusCode::BAD_GATEWAY, error.to_string()))
        }
    }
}

/// An object GET: one open for the size, the range check and the bytes
/// (a put landing meanwhile cannot give the old length with the new
/// bytes), then the bytes streamed a part at a time as the client takes
/// them.
async fn get_object(
    shard: Rc<LocalShard>,
    which: Store,
    request: &Request<Incoming>,
    user: &str,
    key: &[u8],
) -> Reply {
    let store = which.of(&shard);
    let reader = match store
        .open_read(user, key, 0, limits::HTTP_OBJECT_CHUNK_BYTES as u64)
        .await
    {
        Ok(Some(reader)) => reader,
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("No object {}", String::from_utf8_lossy(key)),
            )
        }
        Err(error) => return storage_error(error),
    };
    let size = reader.len_bytes();
    let range = match request
        .headers()
        .get(hyper::header::RANGE)
        .map(|v| v.to_str())
    {
        None => None,
        Some(Ok(spec)) => match parse_range(spec, size) {
            Ok(range) => Some(range),
            Err(()) => {
                let mut reply = text(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("Range {spec} is not satisfiable for {size} bytes"),
                );
                if let Ok(value) = hyper::header::HeaderValue::from_str(&format!("bytes */{size}"))
                {
                    reply
                        .headers_mut()
                        .insert(hyper::header::CONTENT_RANGE, value);
                }
                let _ = reader.close().await;
                return reply;
            }
        },
        Some(Err(_)) => {
            let _ = reader.close().await;
            return text(StatusCode::BAD_REQUEST, "Range header is not ASCII");
        }
    };
    let (offset, len) = range.map_or((0, size), |(first, last)| (first, last - first + 1));
    let part_bytes = (limits::HTTP_OBJECT_CHUNK_BYTES as u64).min(len);
    let share = match shard.node.http_buffers.take(part_bytes) {
        Ok(share) => share,
        Err(refused) => {
            let _ = reader.close().await;
            return buffers_busy(refused);
        }
    };
    let parts = Parts {
        shard: shard.clone(),
        which,
        reader: Some(reader.into_owned()),
        at: offset,
        end: offset + len,
        part_bytes,
        _share: share,
        _working: super::io::Working::begin(),
    };
    let body: Body = Box::pin(http_body_util::StreamBody::new(futures::stream::unfold(
        parts,
        Parts::next,
    )));
    let mut reply = hyper::Response::new(body);
    *reply.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let headers = reply.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(hyper::header::CONTENT_LENGTH, len.into());
    if let Some((first, last)) = range {
        if let Ok(value) =
            hyper::header::HeaderValue::from_str(&format!("bytes {first}-{last}/{size}"))
        {
            headers.insert(hyper::header::CONTENT_RANGE, value);
        }
    }
    reply
}

/// The parts of a streamed GET still to send.
struct Parts {
    shard: Rc<LocalShard>,
    which: Store,
    reader: Option<OwnedReader>,
    at: u64,
    end: u64,
    part_bytes: u64,
    /// The part's room in the node's HTTP buffers, held until the last part.
    _share: Share,
    /// Each part is read from the store while hyper waits for it.
    _working: super::io::Working,
}

type PartFrame = Result<hyper::body::Frame<bytes::Bytes>, BodyError>;

impl Parts {
    /// The next part, read when hyper asks for it (the client took the
    /// one before); the reader is closed after the last.
    async fn next(mut self) -> Option<(PartFrame, Parts)> {
        let reader = self.reader.take()?;
        if self.at >= self.end {
            if let Err(error) = reader.close().await {
                tracing::warn!(%error, "closing an object after its answer");
            }
            return None;
        }
        let want = self.part_bytes.min(self.end - self.at) as usize;
        let mut part = vec![0; want];
        let store = self.which.of(&self.shard);
        match reader.read_into(store, self.at, &mut part).await {
            Ok(n) if n == want => {
                self.at += n as u64;
                self.reader = Some(reader);
                Some((Ok(hyper::body::Frame::data(part.into())), self))
            }
            // Shorter than the length already sent: the answer cannot be
            // whole, so the connection is cut rather than padded.
            Ok(n) => Some((
                Err(format!(
                    "the object ended at {} of {} bytes",
                    self.at + n as u64,
                    self.end
                )
                .into()),
                self,
            )),
            Err(error) => {
                tracing::warn!(%error, "reading an object mid-answer");
                Some((Err(error.to_string().into()), self))
            }
        }
    }
}

async fn delete_object(store: &Objects, user: &str, key: &[u8]) -> Reply {
    match store.delete(user, key).await {
        Ok(true) => text(StatusCode::OK, "OK"),
        Ok(false) => text(
            StatusCode::NOT_FOUND,
            format!("No object {}", String::from_utf8_lossy(key)),
        ),
        Err(error) => storage_error(error),
    }
}

async fn list_objects(store: &Objects, user: &str) -> Reply {
    match store.list(user).await {
        Ok(objects) => {
            let list: Vec<serde_json::Value> = objects
                .iter()
                .map(|o| serde_json::json!({"key": String::from_utf8_lossy(&o.key), "size": o.size_bytes}))
                .collect();
            let mut reply = text(StatusCode::OK, serde_json::Value::Array(list).to_string());
            reply.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            reply
        }
        Err(error) => storage_error(error),
    }
}

/// The one place object errors become statuses: the client's fault is 400,
/// a storage node's is 502, ours is 500.
fn storage_error(error: ObjectError) -> Reply {
    use ferry_storage::StorageError as E;
    match error {
        ObjectError::Storage(
            E::ObjectTooLarge { .. } | E::KeyTooLong { .. } | E::BadUser { .. },
        ) => text(StatusCode::BAD_REQUEST, error.to_string()),
        ObjectError::Peer { .. } | ObjectError::Transport { .. } => {
            tracing::warn!(%error, "storage node error");
            text(
                StatusCode::BAD_GATEWAY,
                format!("Storage node error: {error}"),
            )
        }
        error => {
            tracing::error!(%error, "object store error");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Storage error: {error}"),
            )
        }
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` as an inclusive (first, last).
fn parse_range(spec: &str, size: u64) -> Result<(u64, u64), ()> {
    let spec = spec.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(()); // multipart ranges are not served
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    let (first, last) = match (first.trim(), last.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().map_err(|_| ())?, b.parse().map_err(|_| ())?);
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if first >= size || last < first {
        return Err(());
    }
    Ok((first, last))
}

/// Decodes a path's `%XX` escapes with the `percent-encoding` crate; None
/// when a `%` is not followed by two hex digits (RFC 3986), which the
/// crate would pass through as they are: `%+1` is refused, not 0x01.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, byte)| {
        *byte != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    well_formed.then(|| percent_encoding::percent_decode(bytes).collect())
}

#[cfg(test)]
mod tests {
    use super::{parse_range, percent_decode};

    #[test]
    fn ranges() {
        let check = |spec: &str, size: u64, expected: Result<(u64, u64), ()>| {
            assert_eq!(parse_range(spec, size), expected, "{spec} of {size}");
        };
        check("bytes=0-9", 100, Ok((0, 9)));
        check("bytes=90-200", 100, Ok((90, 99)));
        check("bytes=10-", 100, Ok((10, 99)));
        check("bytes=-10", 100, Ok((90, 99)));
        check("bytes=-200", 100, Ok((0, 99)));
        check("bytes=100-", 100, Err(()));
        check("bytes=5-4", 100, Err(()));
        check("bytes=0-0", 0, Err(()));
        check("items=0-1", 100, Err(()));
        check("bytes=0-1,3-4", 100, Err(()));
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some(&b"a/b c"[..]));
        assert_eq!(
            percent_decode("caf%C3%A9").as_deref(),
            Some("café".as_bytes())
        );
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(
            percent_decode("a%+1"),
            None,
            "u8::from_str_radix takes a sign"
        );
        assert_eq!(percent_decode("a%-1"), None);
        assert_eq!(percent_decode("a% 1"), None);
        assert_eq!(percent_decode("%%41"), None);
        assert_eq!(percent_decode("50%"), None);
        assert_eq!(percent_decode("a%2bb%2B").as_deref(), Some(&b"a+b+"[..]));
        assert_eq!(percent_decode("%00%ff").as_deref(), Some(&[0u8, 0xff][..]));
        assert_eq!(
            percent_decode("plain+key").as_deref(),
            Some(&b"plain+key"[..])
        );
    }
}
