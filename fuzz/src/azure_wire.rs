//! What IMDS, Entra ID and ARM answer, read as `podid-azure`'s clients read it: token
//! answers, ARM error answers (status, `Retry-After`, `x-ms-ratelimit-remaining-*`, the
//! identities a `LinkedAuthorizationFailed` or `FailedIdentityOperation` names), long-running
//! operation answers and VM/scale-set bodies.
//!
//! Input: a selector byte, then an HTTP answer as text: `STATUS\n`, `name: value\n` lines up
//! to an empty line, then the body. For the operation reader the first answer is followed by
//! `\0` and the poll answer. Selector (mod 6): 0 IMDS token, 1 Entra token, 2 ARM error,
//! 3 ARM operation, 4 machine body, 5 ARM error body alone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podid_azure::arm::{ArmError, ArmErrorBody, MachineId, MachineKind};
use podid_azure::credential::{AuthError, Surface};
use podid_azure::fuzzing;
use podid_azure::resource_id::{ResourceId, USER_ASSIGNED_IDENTITY_TYPE};
use url::Url;

use crate::split_nul;

/// An HTTP answer as the input spells it.
struct Answer<'a> {
    status: u16,
    headers: Vec<(String, &'a [u8])>,
    body: &'a [u8],
}

impl<'a> Answer<'a> {
    fn parse(data: &'a [u8]) -> Self {
        let mut rest = data;
        let mut line = || {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (head, tail) = rest.split_at(end);
            rest = tail.get(1..).unwrap_or_default();
            head.strip_suffix(b"\r").unwrap_or(head)
        };
        let status = std::str::from_utf8(line())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(200);
        let mut headers = Vec::new();
        loop {
            let header = line();
            if header.is_empty() || headers.len() >= 32 {
                break;
            }
            let (name, value) = match header.iter().position(|&b| b == b':') {
                Some(at) => (&header[..at], &header[at + 1..]),
                None => (header, &[][..]),
            };
            let value = value.strip_prefix(b" ").unwrap_or(value);
            headers.push((String::from_utf8_lossy(name).trim().to_owned(), value));
        }
        Self {
            status,
            headers,
            body: rest,
        }
    }

    fn pairs(&self) -> Vec<(&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), *v)).collect()
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => token(Surface::Imds, rest),
        1 => token(Surface::Entra, rest),
        2 => arm_error(rest),
        3 => operation(rest),
        4 => machine(rest),
        _ => {
            if let Some(body) = fuzzing::arm_error_body(rest) {
                check_failing_identities(&body, rest);
            }
        }
    }
}

fn token(surface: Surface, data: &[u8]) {
    let answer = Answer::parse(data);
    let headers = fuzzing::header_map(&answer.pairs());
    let result = fuzzing::token_answer(surface, answer.status, &headers, answer.body, now());
    let secret = serde_json::from_slice::<serde_json::Value>(answer.body)
        .ok()
        .and_then(|v| {
            v.get("access_token")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .filter(|t| t.len() >= 8);
    match result {
        Ok(token) => {
            assert_eq!(answer.status, 200);
            assert!(!token.access_token().is_empty());
            let _ = token.is_fresh(now(), Duration::from_secs(300));
            let _ = format!("{token:?}");
        }
        Err(error) => {
            let text = format!("{error} {error:?}");
            if let Some(secret) = secret {
                assert!(
                    !text.contains(&secret),
                    "an error shows the access token: {text}"
                );
            }
            let _ = (error.is_temporary(), error.retry_after());
            match &error {
                AuthError::Service(service) => {
                    assert_ne!(answer.status, 200);
                    assert_eq!(service.status, answer.status);
                    assert_eq!(service.retry_after, fuzzing::retry_after(&headers, now()));
                    let _ = (service.aadsts(), service.is_identity_not_found());
                }
                AuthError::InvalidResponse { .. } => assert_eq!(answer.status, 200),
                other => panic!("reading an answer gave {other:?}"),
            }
        }
    }
    check_retry_after(&answer);
}

/// `Retry-After` in integer seconds is exactly that wait.
fn check_retry_after(answer: &Answer) {
    let headers = fuzzing::header_map(&answer.pairs());
    let first = answer.headers.iter().find(|(n, v)| {
        n.eq_ignore_ascii_case("retry-after") && fuzzing::header_map(&[(n, v)]).len() == 1
    });
    let wait = fuzzing::retry_after(&headers, now());
    if let Some(seconds) = first
        // A value with bytes outside ASCII is not text (`HeaderValue::to_str`), so it holds no
        // number even when `str::trim` would strip a Unicode space around one.
        .filter(|(_, v)| v.is_ascii())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        assert_eq!(wait, Some(Duration::from_secs(seconds)));
    }
}

fn arm_error(data: &[u8]) {
    let answer = Answer::parse(data);
    let headers = fuzzing::header_map(&answer.pairs());
    let url = Url::parse("https://management.azure.com/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachineScaleSets/pool0?api-version=2024-07-01").unwrap();
    let error = fuzzing::arm_error("PATCH", &url, answer.status, &headers, answer.body, now());
    let _ = format!("{error} {error:?}");
    assert_eq!(error.status(), Some(answer.status));
    assert_eq!(
        matches!(error, ArmError::Throttled(_)),
        answer.status == 429
    );
    if matches!(answer.status, 408 | 429 | 500..=599) {
        assert!(error.is_temporary());
    }
    assert_eq!(error.retry_after(), fuzzing::retry_after(&headers, now()));
    let limits = error
        .rate_limits()
        .expect("an answer has rate limits")
        .clone();
    let _ = limits.lowest_resource();
    let mut merged = limits.clone();
    merged.merge(limits.clone());
    assert_eq!(
        merged, limits,
        "merging counters with themselves changed them"
    );
    if let ArmError::Throttled(status) | ArmError::Status(status) = &error {
        assert!(
            !status.url.contains('?'),
            "the URL keeps its query: {}",
            status.url
        );
        check_failing_identities(&status.error, answer.body);
    }
    check_retry_after(&answer);
}

/// Every identity an error names is a user-assigned identity ID that its text holds, and its
/// text parses back to the same ID.
fn check_failing_identities(error: &ArmErrorBody, body: &[u8]) {
    let _ = body;
    let mut texts = vec![error.message.to_ascii_lowercase()];
    texts.extend(error.details.iter().map(|d| d.message.to_ascii_lowercase()));
    for id in error.failing_identities() {
        assert!(id.is_type(USER_ASSIGNED_IDENTITY_TYPE), "{id}");
        let text = id.to_string();
        assert_eq!(ResourceId::parse(&text).as_ref(), Ok(&id));
        assert!(
            texts.iter().any(|t| t.contains(&text.to_ascii_lowercase())),
            "{text} is not in the error's messages"
        );
    }
}

fn operation(data: &[u8]) {
    let (first, poll) = split_nul(data);
    let first = Answer::parse(first);
    let poll = Answer::parse(poll);
    let headers = fuzzing::header_map(&first.pairs());
    let resource = Url::parse("https://management.azure.com/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm0?api-version=2024-07-01").unwrap();
    let view = fuzzing::operation(
        &resource,
        first.status,
        &headers,
        first.body,
        poll.status,
        poll.body,
        now(),
    );
    if let Ok(url) = &view.poll_url {
        assert_eq!(url.origin(), resource.origin(), "polling leaves ARM: {url}");
    }
    assert!(view.delay <= Duration::from_secs(60), "{:?}", view.delay);
}

fn machine(data: &[u8]) {
    let id = MachineId::new(MachineKind::VirtualMachineScaleSet, "s", "g", "pool0");
    if let Ok(machine) = fuzzing::machine(id, data) {
        let _ = machine.is_deleting();
        for id in machine.identity.user_assigned.keys() {
            assert_eq!(ResourceId::parse(&id.to_string()).as_ref(), Ok(id));
        }
    }
}
