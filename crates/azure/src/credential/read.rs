//! Reading a token answer, the same on IMDS and Entra ID: 200 with token fields, or the
//! service's error.

use std::time::SystemTime;

use url::Url;

use super::error::{AuthError, ServiceError, Surface};
use super::token::{Token, TokenFields};

/// The URL for messages and logs: the query names identities and resources, which is noise
/// there.
pub(crate) fn url_without_query(url: &Url) -> String {
    let mut bare = url.clone();
    bare.set_query(None);
    bare.to_string()
}

pub(crate) async fn read_token_response(
    surface: Surface,
    url: &Url,
    response: reqwest::Response,
) -> Result<Token, AuthError> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|source: reqwest::Error| AuthError::Transport {
            surface,
            url: url_without_query(url),
            source: source.without_url(),
        })?;
    token_from_answer(surface, status, &headers, &body, SystemTime::now())
}

/// What an answer of `status` with `headers` and `body`, received at `now`, means: the token,
/// or the service's error. Pure, so the fuzz targets reach it (`crate::fuzzing`).
pub(crate) fn token_from_answer(
    surface: Surface,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Token, AuthError> {
    if status != 200 {
        let error = ServiceError::read(surface, status, headers, body, now);
        tracing::debug!(%surface, status, code = ?error.code, "token request refused");
        return Err(AuthError::Service(Box::new(error)));
    }
    let fields: TokenFields =
        serde_json::from_slice(body).map_err(|e| AuthError::InvalidResponse {
            surface,
            // Only the position: serde_json's message may quote a value, and values are tokens.
            reason: format!(
                "the body is not a token response ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        })?;
    Token::from_fields(fields, now).map_err(|reason| AuthError::InvalidResponse { surface, reason })
}
