//! Pure entry points for the fuzz targets in `fuzz/`: the readers of what IMDS, Entra ID and
//! ARM answer, without a socket. Not an API (hidden, may change with the fuzz targets); each
//! function is the code the clients run, only reached without a request.

use std::time::{Duration, SystemTime};

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::arm::{self, ArmError, ArmErrorBody, Machine, MachineId, PollOptions, RateLimits};
use crate::credential::{AuthError, Surface, Token};
use crate::wire;

/// Headers as a client would receive them; pairs that are not valid header names or values
/// (which no HTTP client would hand over) are left out.
pub fn header_map(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

/// A token answer from IMDS or Entra ID, read as the credentials read it.
pub fn token_answer(
    surface: Surface,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Token, AuthError> {
    crate::credential::read::token_from_answer(surface, status, headers, body, now)
}

/// An ARM error answer (status outside 2xx) to `method url`, read as the ARM client reads it.
pub fn arm_error(
    method: &str,
    url: &Url,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> ArmError {
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    let answer = arm::Answer {
        status,
        rate_limits: RateLimits::from_headers(headers),
        headers: headers.clone(),
        body: body.to_vec(),
    };
    arm::status_error(&method, url, answer, now)
}

/// The body reader of ARM errors: `{"error": {…}}` or the bare object.
pub fn arm_error_body(body: &[u8]) -> Option<ArmErrorBody> {
    ArmErrorBody::read(body)
}

/// `Retry-After` as the clients read it.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    wire::retry_after(headers, now)
}

/// What a long-running operation's answers mean, as `patch_identity` reads them.
#[derive(Debug)]
pub struct OperationView {
    /// `Debug` of the state after the first answer.
    pub initial: String,
    /// The URL polled, or why there is none.
    pub poll_url: Result<Url, String>,
    /// `Debug` of the state after one poll answer, when there is a URL to poll.
    pub polled: Option<Result<String, String>>,
    /// The wait before the next poll.
    pub delay: Duration,
}

/// The first answer (`status`, `headers`, `body`) to a PATCH of `resource`, then one poll
/// answer (`poll_status`, `poll_body`).
pub fn operation(
    resource: &Url,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    poll_status: u16,
    poll_body: &[u8],
    now: SystemTime,
) -> OperationView {
    let initial = format!("{:?}", arm::initial_state(status, body));
    let target = arm::poll_target(status, headers, resource);
    let polled = target
        .as_ref()
        .ok()
        .map(|target| arm::poll_state(target, poll_status, poll_body).map(|s| format!("{s:?}")));
    OperationView {
        initial,
        poll_url: target.map(|target| target.url().clone()),
        polled,
        delay: PollOptions::default().delay(headers, now),
    }
}

/// A VM or scale-set GET body for `id`.
pub fn machine(id: MachineId, body: &[u8]) -> Result<Machine, String> {
    Machine::from_body(id, body)
}
