//! Why a token could not be had, and whether trying again may help.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::certificate::CertificateError;
use crate::wire;

/// Where a token was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Imds,
    Entra,
}

impl fmt::Display for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Surface::Imds => "IMDS",
            Surface::Entra => "Entra ID",
        })
    }
}

/// A token request that failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No answer: connection refused or reset, timeout, TLS failure.
    #[error("{surface} at {url} did not answer: {source}")]
    Transport {
        surface: Surface,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer other than 200.
    #[error(transparent)]
    Service(Box<ServiceError>),
    /// A 200 whose body is not a usable token.
    #[error("{surface} answered 200 without a usable token: {reason}")]
    InvalidResponse { surface: Surface, reason: String },
    /// The request could not be formed (an authority that is not a base URL, an empty tenant).
    #[error("cannot ask {surface} for a token: {reason}")]
    InvalidRequest { surface: Surface, reason: String },
    /// The client assertion could not be signed.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
}

impl AuthError {
    /// Whether the same request may succeed later: no answer, 429, 5xx, and the statuses IMDS
    /// documents as transient. Wrong identities, secrets and certificates are permanent.
    pub fn is_temporary(&self) -> bool {
        match self {
            AuthError::Transport { .. } => true,
            AuthError::Service(e) => e.is_temporary(),
            AuthError::InvalidResponse { .. }
            | AuthError::InvalidRequest { .. }
            | AuthError::Certificate(_) => false,
        }
    }

    /// The wait the service asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Service(e) => e.retry_after,
            _ => None,
        }
    }

    /// The service's error, if it answered with one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            AuthError::Service(e) => Some(e),
            _ => None,
        }
    }
}

/// An error answer from IMDS or Entra ID: `{"error", "error_description"[, "error_codes"]}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ServiceError {
    pub surface: Surface,
    pub status: u16,
    /// `error`, e.g. `invalid_request`, `invalid_client`.
    pub code: Option<String>,
    /// `error_description`; Entra's starts with `AADSTS<n>: `.
    pub description: Option<String>,
    /// Entra's `error_codes` (the AADSTS numbers).
    pub error_codes: Vec<u64>,
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered {}", self.surface, self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(description) = &self.description {
            // Entra appends trace lines after the first line; they add nothing to a log line.
            let first = description.lines().next().unwrap_or_default();
            write!(f, ": {first}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
}

impl ServiceError {
    /// Reads an error answer; a body that is not the error shape leaves the fields empty.
    pub(crate) fn read(
        surface: Surface,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Self {
        let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
        let (code, description, error_codes) = match parsed {
            Some(b) => (b.error, b.error_description, b.error_codes),
            None => (None, None, Vec::new()),
        };
        Self {
            surface,
            status,
            code,
            description,
            error_codes,
            retry_after: wire::retry_after(headers, now),
        }
    }

    pub fn is_temporary(&self) -> bool {
        match self.surface {
            Surface::Imds => imds_status_is_temporary(self.status),
            Surface::Entra => entra_status_is_temporary(self.status),
        }
    }

    /// The first AADSTS code.
    pub fn aadsts(&self) -> Option<u64> {
        self.error_codes.first().copied()
    }

    /// IMDS's "Identity not found": the identity is not (or not yet) on the machine.
    pub fn is_identity_not_found(&self) -> bool {
        self.surface == Surface::Imds
            && self.status == 400
            && self
                .description
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case("Identity not found"))
    }
}

/// IMDS statuses worth retrying: 404 and 410 while IMDS updates or boots, 408, 429, and 5xx
/// (the list Azure's own IMDS clients retry).
fn imds_status_is_temporary(status: u16) -> bool {
    matches!(status, 404 | 408 | 410 | 429 | 500..=599)
}

/// Entra ID statuses worth retrying: 408, 429 and 5xx. 400 and 401 are wrong requests or
/// credentials.
fn entra_status_is_temporary(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, RETRY_AFTER};

    #[test]
    fn imds_transient_statuses_are_exactly_the_documented_ones() {
        for status in 100..=599u16 {
            let expected = matches!(status, 404 | 408 | 410 | 429) || status >= 500;
            assert_eq!(imds_status_is_temporary(status), expected, "{status}");
        }
    }

    #[test]
    fn entra_transient_statuses_exclude_400_and_401() {
        for status in 100..=599u16 {
            let expected = matches!(status, 408 | 429) || status >= 500;
            assert_eq!(entra_status_is_temporary(status), expected, "{status}");
        }
    }

    #[test]
    fn entra_errors_carry_code_description_and_aadsts() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: t\r\nCorrelation ID: c\r\nTimestamp: x","error_codes":[7000215]}"#;
        let e = ServiceError::read(
            Surface::Entra,
            401,
            &HeaderMap::new(),
            body,
            SystemTime::now(),
        );
        assert_eq!(e.code.as_deref(), Some("invalid_client"));
        assert_eq!(e.aadsts(), Some(7_000_215));
        assert!(!e.is_temporary());
        assert_eq!(
            e.to_string(),
            "Entra ID answered 401 invalid_client: AADSTS7000215: Invalid client secret provided."
        );
    }

    #[test]
    fn imds_errors_keep_retry_after_and_know_identity_not_found() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        let throttled = ServiceError::read(
            Surface::Imds,
            429,
            &headers,
            br#"{"error":"too_many_requests","error_description":"slow down"}"#,
            SystemTime::now(),
        );
        assert!(throttled.is_temporary());
        assert_eq!(throttled.retry_after, Some(Duration::from_secs(3)));
        assert!(!throttled.is_identity_not_found());

        let missing = ServiceError::read(
            Surface::Imds,
            400,
            &HeaderMap::new(),
            br#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            SystemTime::now(),
        );
        assert!(missing.is_identity_not_found());
        assert!(!missing.is_temporary());
    }

    #[test]
    fn a_body_that_is_not_an_error_leaves_fields_empty() {
        let e = ServiceError::read(
            Surface::Imds,
            502,
            &HeaderMap::new(),
            b"<html>",
            SystemTime::now(),
        );
        assert_eq!((e.code, e.description, e.error_codes), (None, None, vec![]));
        assert!(
            AuthError::Service(Box::new(ServiceError::read(
                Surface::Imds,
                502,
                &HeaderMap::new(),
                b"",
                SystemTime::now()
            )))
            .is_temporary()
        );
    }
}
