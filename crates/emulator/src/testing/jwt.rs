//! Reading JWTs without verifying them (verification is [`TokenIssuer::verify`]).
//!
//! [`TokenIssuer::verify`]: crate::tokens::TokenIssuer::verify

use base64::Engine;
use serde_json::Value;

/// The claims of a JWT, decoded without verification.
///
/// # Panics
/// If `jwt` is not three base64url segments of JSON.
pub fn jwt_claims(jwt: &str) -> Value {
    segment(jwt, 1)
}

/// The header of a JWT, decoded without verification.
///
/// # Panics
/// If `jwt` is not three base64url segments of JSON.
pub fn jwt_header(jwt: &str) -> Value {
    segment(jwt, 0)
}

fn segment(jwt: &str, index: usize) -> Value {
    let part = jwt
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("a JWT has segment {index}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("the segment is base64url");
    serde_json::from_slice(&bytes).expect("the segment is JSON")
}
