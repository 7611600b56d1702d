//! A no-op HTTP handler for the `wasi:http/proxy` world: it reads the
//! request body to its end (the input a function would be handed) and
//! answers 200 with a two-byte body, whatever the method or path.
//! `wasmtime serve` instantiates it afresh for every request.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Noop;

wasi::http::proxy::export!(Noop);

/// The answer's body.
const ANSWER: &[u8] = b"OK";
/// Its length, as the Content-Length header's value, written out: the
/// component imports only what `wasmtime serve` offers by default (the
/// `wasi:http/proxy` world), and code that can reach std's panic hook
/// (number formatting, for one) would import `wasi:cli/environment` too.
const ANSWER_LENGTH: &[u8] = b"2";
const _: () = assert!(ANSWER.len() == 2);

impl Guest for Noop {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        drain(&request);
        // A Content-Length, so that the answer is not chunked: the same
        // framing as ferry's and the floor's answers.
        let headers = Fields::new();
        let _ = headers.append("content-length", ANSWER_LENGTH);
        let response = OutgoingResponse::new(headers);
        // A fresh response's body and stream are taken once, so these
        // cannot fail; if they did, the host answers 500 for a handler
        // that set no response.
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(ANSWER);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

/// Reads the request body to its end and drops it.
fn drain(request: &IncomingRequest) {
    let Ok(body) = request.consume() else { return };
    if let Ok(stream) = body.stream() {
        // Ends at the end of the body (`closed`) or on a failed read.
        while stream.blocking_read(64 * 1024).is_ok() {}
    }
    let _ = IncomingBody::finish(body);
}
