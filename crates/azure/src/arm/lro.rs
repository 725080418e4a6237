//! Long-running operations: where to poll, how long to wait, and what an answer means.
//! Pure; the client does the requests and the waiting.
//!
//! After a PATCH, ARM points at an operation to poll with `Azure-AsyncOperation` (preferred)
//! or `Location`; without either the resource itself is polled for its
//! `provisioningState`. Each answer may carry `Retry-After`; terminal states are `Succeeded`,
//! `Failed` and `Canceled`, in any letter case.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;

use super::error::ArmErrorBody;
use crate::wire;

/// How the client waits for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOptions {
    /// Between polls when ARM sends no `Retry-After` (upstream waited 5 s).
    pub default_delay: Duration,
    /// The longest wait between polls, whatever `Retry-After` says.
    pub max_delay: Duration,
    /// Give up after this long (upstream's client gave up after 15 minutes).
    pub timeout: Duration,
}

impl Default for PollOptions {
    fn default() -> Self {
        Self {
            default_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl PollOptions {
    /// The wait before the next poll: `Retry-After`, else the default, at most `max_delay`.
    pub(crate) fn delay(&self, headers: &HeaderMap, now: SystemTime) -> Duration {
        wire::retry_after(headers, now)
            .unwrap_or(self.default_delay)
            .min(self.max_delay)
    }
}

/// What is polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PollTarget {
    AsyncOperation(Url),
    Location(Url),
    Resource(Url),
}

impl PollTarget {
    pub(crate) fn url(&self) -> &Url {
        match self {
            PollTarget::AsyncOperation(u) | PollTarget::Location(u) | PollTarget::Resource(u) => u,
        }
    }
}

/// Where an operation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OperationState {
    InProgress,
    Succeeded,
    /// `Failed` or `Canceled` (as spelled), with ARM's error when it gave one.
    Ended {
        status: String,
        error: ArmErrorBody,
    },
}

impl OperationState {
    fn from_status(status: &str, error: Option<ArmErrorBody>) -> Self {
        if status.eq_ignore_ascii_case("Succeeded") {
            OperationState::Succeeded
        } else if status.eq_ignore_ascii_case("Failed") || status.eq_ignore_ascii_case("Canceled") {
            OperationState::Ended {
                status: status.to_string(),
                error: error.unwrap_or_default(),
            }
        } else {
            OperationState::InProgress
        }
    }
}

/// The state after the first answer to a PATCH (200, 201, 202 or 204): the resource's
/// `provisioningState` for 200/201 (absent: done for 200, running for 201), running for 202,
/// done for 204.
pub(crate) fn initial_state(status: u16, body: &[u8]) -> OperationState {
    match status {
        202 => OperationState::InProgress,
        204 => OperationState::Succeeded,
        _ => match provisioning_state(body) {
            Some(state) => OperationState::from_status(&state, None),
            None if status == 201 => OperationState::InProgress,
            None => OperationState::Succeeded,
        },
    }
}

fn provisioning_state(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value["properties"]["provisioningState"]
        .as_str()
        .map(str::to_string)
}

/// Where to poll. A polling URL must be on the ARM host the request went to: the token is
/// sent there, and it must not go anywhere else.
pub(crate) fn poll_target(
    status: u16,
    headers: &HeaderMap,
    resource: &Url,
) -> Result<PollTarget, String> {
    let same_origin = |name: &str| -> Result<Option<Url>, String> {
        let Some(text) = wire::header(headers, name) else {
            return Ok(None);
        };
        let url = resource
            .join(text)
            .map_err(|e| format!("{name} is not a URL: {e}"))?;
        if url.origin() != resource.origin() {
            return Err(format!(
                "{name} points at another host: {}",
                url.origin().ascii_serialization()
            ));
        }
        Ok(Some(url))
    };
    if let Some(url) = same_origin("azure-asyncoperation")? {
        return Ok(PollTarget::AsyncOperation(url));
    }
    if let Some(url) = same_origin("location")? {
        return Ok(PollTarget::Location(url));
    }
    if status == 202 {
        return Err("202 without Azure-AsyncOperation or Location".into());
    }
    Ok(PollTarget::Resource(resource.clone()))
}

/// What a poll answer means; `Err` with the reason when it is not a status answer. Error
/// statuses are the caller's to turn into errors before asking.
pub(crate) fn poll_state(
    target: &PollTarget,
    status: u16,
    body: &[u8],
) -> Result<OperationState, String> {
    match target {
        PollTarget::AsyncOperation(_) => {
            #[derive(serde::Deserialize)]
            struct Operation {
                status: Option<String>,
                error: Option<ArmErrorBody>,
            }
            let op: Operation = serde_json::from_slice(body)
                .map_err(|_| "the operation status is not JSON".to_string())?;
            let status = op
                .status
                .ok_or_else(|| "the operation status has no status".to_string())?;
            Ok(OperationState::from_status(&status, op.error))
        }
        PollTarget::Location(_) => Ok(if status == 202 {
            OperationState::InProgress
        } else {
            OperationState::Succeeded
        }),
        PollTarget::Resource(_) => Ok(match provisioning_state(body) {
            Some(state) => OperationState::from_status(&state, None),
            None => OperationState::Succeeded,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource() -> Url {
        Url::parse("https://127.0.0.1:9443/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm?api-version=2019-12-01").unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn initial_answers_map_to_states() {
        let updating = br#"{"properties":{"provisioningState":"Updating"}}"#;
        let succeeded = br#"{"properties":{"provisioningState":"succeeded"}}"#;
        assert_eq!(initial_state(200, updating), OperationState::InProgress);
        assert_eq!(initial_state(200, succeeded), OperationState::Succeeded);
        assert_eq!(initial_state(200, b"{}"), OperationState::Succeeded);
        assert_eq!(initial_state(201, b"{}"), OperationState::InProgress);
        assert_eq!(initial_state(201, succeeded), OperationState::Succeeded);
        assert_eq!(initial_state(202, succeeded), OperationState::InProgress);
        assert_eq!(initial_state(204, b""), OperationState::Succeeded);
        assert!(matches!(
            initial_state(200, br#"{"properties":{"provisioningState":"Failed"}}"#),
            OperationState::Ended { status, .. } if status == "Failed"
        ));
    }

    #[test]
    fn async_operation_wins_over_location_and_the_resource() {
        let h = headers(&[
            (
                "azure-asyncoperation",
                "https://127.0.0.1:9443/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/op1?api-version=2019-12-01",
            ),
            ("location", "https://127.0.0.1:9443/loc"),
        ]);
        assert!(matches!(poll_target(200, &h, &resource()).unwrap(),
            PollTarget::AsyncOperation(u) if u.path().ends_with("/operations/op1")));
        let h = headers(&[("location", "/loc?x=1")]);
        assert_eq!(
            poll_target(202, &h, &resource()).unwrap(),
            PollTarget::Location(Url::parse("https://127.0.0.1:9443/loc?x=1").unwrap())
        );
        assert_eq!(
            poll_target(200, &HeaderMap::new(), &resource()).unwrap(),
            PollTarget::Resource(resource())
        );
        assert!(poll_target(202, &HeaderMap::new(), &resource()).is_err());
    }

    #[test]
    fn polling_urls_on_another_host_are_refused() {
        for url in [
            "https://evil.example/op",
            "http://127.0.0.1:9443/op",
            "https://127.0.0.1:9444/op",
        ] {
            let h = headers(&[("azure-asyncoperation", url)]);
            assert!(poll_target(200, &h, &resource()).is_err(), "{url}");
        }
        let h = headers(&[("location", "http://[::1")]);
        assert!(poll_target(202, &h, &resource()).is_err());
    }

    #[test]
    fn operation_status_bodies() {
        let t = PollTarget::AsyncOperation(resource());
        assert_eq!(
            poll_state(&t, 200, br#"{"status":"InProgress"}"#),
            Ok(OperationState::InProgress)
        );
        assert_eq!(
            poll_state(&t, 200, br#"{"status":"Accepted"}"#),
            Ok(OperationState::InProgress)
        );
        assert_eq!(
            poll_state(&t, 200, br#"{"status":"SUCCEEDED"}"#),
            Ok(OperationState::Succeeded)
        );
        assert_eq!(
            poll_state(&t, 200, br#"{"status":"Failed","error":{"code":"InternalExecutionError","message":"boom"}}"#),
            Ok(OperationState::Ended {
                status: "Failed".into(),
                error: ArmErrorBody { code: "InternalExecutionError".into(), message: "boom".into(), ..Default::default() },
            })
        );
        assert!(matches!(
            poll_state(&t, 200, br#"{"status":"Canceled"}"#),
            Ok(OperationState::Ended { status, error }) if status == "Canceled" && error == ArmErrorBody::default()
        ));
        assert!(poll_state(&t, 200, b"{}").is_err());
        assert!(poll_state(&t, 200, b"nope").is_err());
    }

    #[test]
    fn location_and_resource_polls() {
        let loc = PollTarget::Location(resource());
        assert_eq!(poll_state(&loc, 202, b""), Ok(OperationState::InProgress));
        assert_eq!(poll_state(&loc, 200, b"{}"), Ok(OperationState::Succeeded));
        assert_eq!(poll_state(&loc, 204, b""), Ok(OperationState::Succeeded));
        let res = PollTarget::Resource(resource());
        assert_eq!(
            poll_state(
                &res,
                200,
                br#"{"properties":{"provisioningState":"Updating"}}"#
            ),
            Ok(OperationState::InProgress)
        );
        assert_eq!(
            poll_state(
                &res,
                200,
                br#"{"properties":{"provisioningState":"Succeeded"}}"#
            ),
            Ok(OperationState::Succeeded)
        );
    }

    #[test]
    fn delays_follow_retry_after_within_bounds() {
        let options = PollOptions::default();
        let now = SystemTime::now();
        assert_eq!(
            options.delay(&HeaderMap::new(), now),
            Duration::from_secs(5)
        );
        assert_eq!(
            options.delay(&headers(&[("retry-after", "0")]), now),
            Duration::ZERO
        );
        assert_eq!(
            options.delay(&headers(&[("retry-after", "2")]), now),
            Duration::from_secs(2)
        );
        assert_eq!(
            options.delay(&headers(&[("retry-after", "9999")]), now),
            Duration::from_secs(60)
        );
        assert_eq!(
            options.delay(&headers(&[("retry-after", "soon")]), now),
            Duration::from_secs(5)
        );
    }
}
