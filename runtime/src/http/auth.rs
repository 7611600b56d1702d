//! Bearer tokens (HTTP.md, "Authentication"): which user a request acts
//! for, and the 401 and 403 replies. A node without `[auth]` in its config
//! passes every check, as Faasm does.
//!
//! 401 (with `WWW-Authenticate: Bearer`) when the request carries no token
//! or one of no user's; 403 when the token is another user's. Tokens are
//! compared as SHA-256 digests in constant time (`config::Auth`).

// The `Err` of these checks is the reply to send as it is, built only on
// the refusal path; boxing it would add an allocation for nothing.
#![allow(clippy::result_large_err)]

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::StatusCode;

use super::reply::{text, Reply};
use crate::config::Auth;

/// The user whose token the request carries; Err is the 401 to send.
pub fn caller<'a>(auth: &'a Auth, headers: &HeaderMap) -> Result<&'a str, Reply> {
    let token = bearer(headers)?;
    auth.owner(token)
        .ok_or_else(|| unauthorized("Invalid token: it is no user's"))
}

/// Whether the request may act for `user`: Err is the 401 or 403 to send.
pub fn check_user(auth: Option<&Auth>, headers: &HeaderMap, user: &str) -> Result<(), Reply> {
    let Some(auth) = auth else {
        return Ok(());
    };
    let token = bearer(headers)?;
    if auth.is_token_of(user, token) {
        return Ok(());
    }
    match auth.owner(token) {
        Some(_) => Err(forbidden(user)),
        None => Err(unauthorized("Invalid token: it is no user's")),
    }
}

/// `/healthz`, `/metrics` and `/ping`: open unless the config guards them,
/// then any user's token will do.
pub fn check_operations(auth: Option<&Auth>, headers: &HeaderMap) -> Result<(), Reply> {
    match auth {
        Some(auth) if auth.guard_operations => caller(auth, headers).map(|_| ()),
        _ => Ok(()),
    }
}

/// A valid token, but not `user`'s.
pub fn forbidden(user: &str) -> Reply {
    text(
        StatusCode::FORBIDDEN,
        format!("Forbidden: this token is not user {user}'s"),
    )
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in
/// any case, RFC 7235).
fn bearer(headers: &HeaderMap) -> Result<&str, Reply> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(unauthorized(
            "Missing token: send Authorization: Bearer <token>",
        ));
    };
    let value = value.to_str().unwrap_or_default().trim();
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(unauthorized(
            "Authorization is not a bearer token: send Authorization: Bearer <token>",
        )),
    }
}

fn unauthorized(reason: &'static str) -> Reply {
    let mut reply = text(StatusCode::UNAUTHORIZED, reason);
    reply.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ferry\""),
    );
    reply
}
