//! Which identity answers a pod's token request, and from where its token comes.
//!
//! - [`select_standard`]: from the AzureAssignedIdentities of this node and pod, one look at
//!   a time, so the server owns the waiting (and the clock);
//! - [`select_managed`]: from the bindings and identities in the pod's namespace, at once;
//! - [`pass_through`]: for an excepted pod, exactly what it asked for, from the node's IMDS.

mod managed;
mod source;
mod standard;

use std::fmt;

use kube::ResourceExt;
use podid_api::AzureIdentity;

pub use managed::select_managed;
pub use source::{SecretRef, ServicePrincipal, TokenSource, Unusable, pass_through, token_source};
pub use standard::{Decision, RetryPolicy, StandardInputs, select_standard};

use crate::reply::{ErrorCode, ErrorReply};
use crate::request::RequestedIdentity;

/// An AzureIdentity, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityRef {
    pub namespace: String,
    pub name: String,
}

impl IdentityRef {
    pub fn of(identity: &AzureIdentity) -> Self {
        Self {
            namespace: identity.namespace().unwrap_or_default(),
            name: identity.name_any(),
        }
    }
}

impl fmt::Display for IdentityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The identity that answers and where its token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub identity: IdentityRef,
    pub source: TokenSource,
}

/// Why no identity answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// AzureIdentities carry no object ID, so a request by `object_id` cannot be checked.
    #[error(
        "Identity not found: object_id is not supported by AAD Pod Identity; ask by client_id or msi_res_id"
    )]
    ObjectIdNotSupported,
    #[error("Identity not found: no AzureIdentity is assigned to pod {pod}")]
    NoIdentity { pod: String },
    /// The pod asked for an identity it is not bound to (the ID is redacted).
    #[error("Identity not found: no AzureIdentity {requested} is assigned to pod {pod}")]
    NotBound { pod: String, requested: String },
    /// The pod's identity stayed `Created` (not yet on the node) through every look.
    #[error(
        "Identity not yet available: the AzureIdentity of pod {pod} is not yet assigned to this node"
    )]
    NotYetAssigned { pod: String },
    #[error("AzureIdentity {identity} cannot be used: {reason}")]
    Unusable {
        identity: IdentityRef,
        reason: Unusable,
    },
}

impl SelectionError {
    /// The answer. `set_retry_after_header` is upstream's `--set-retry-after-header`, which
    /// turns every "not found" into 503 with `Retry-After: 20`.
    ///
    /// Deviations: upstream answered 404 to all of these. 404 is a status IMDS clients retry
    /// for tens of seconds, so only an identity still being assigned keeps it; a pod without a
    /// matching identity gets IMDS's own 400 "Identity not found", which clients report at
    /// once; an identity that cannot make tokens gets 403 (upstream failed later, with 503).
    pub fn reply(&self, set_retry_after_header: bool) -> ErrorReply {
        let description = self.to_string();
        match self {
            Self::ObjectIdNotSupported => ErrorReply::invalid_request(description),
            Self::Unusable { .. } => ErrorReply::new(403, ErrorCode::Forbidden, description),
            _ if set_retry_after_header => ErrorReply::retry_later(description),
            Self::NoIdentity { .. } | Self::NotBound { .. } => {
                ErrorReply::invalid_request(description)
            }
            Self::NotYetAssigned { .. } => ErrorReply::new(404, ErrorCode::NotFound, description),
        }
    }
}

/// Whether `identity` is the one `requested` names: client IDs (GUIDs) and ARM resource IDs
/// compare ignoring case, as Azure compares them. An unspecified request matches every
/// identity; a request by object ID none.
///
/// Deviation: upstream waited for a case-insensitive match and then served only a
/// case-sensitive one, so a client ID in upper case waited 80 s and then failed.
fn matches_request(identity: &AzureIdentity, requested: &RequestedIdentity) -> bool {
    let equal = |field: &Option<String>, wanted: &str| {
        field
            .as_deref()
            .is_some_and(|value| value.eq_ignore_ascii_case(wanted))
    };
    match requested {
        RequestedIdentity::Unspecified => true,
        RequestedIdentity::ClientId(id) => equal(&identity.spec.client_id, id),
        RequestedIdentity::ResourceId(id) => equal(&identity.spec.resource_id, id),
        RequestedIdentity::ObjectId(_) => false,
    }
}

/// The failure when nothing matched: which one depends on whether the pod asked for a
/// particular identity.
fn not_found(pod: String, requested: &RequestedIdentity) -> SelectionError {
    match requested {
        RequestedIdentity::ClientId(id) => SelectionError::NotBound {
            pod,
            requested: format!("with clientID {}", redact(id)),
        },
        RequestedIdentity::ResourceId(id) => SelectionError::NotBound {
            pod,
            requested: format!("with resourceID {id}"),
        },
        RequestedIdentity::ObjectId(_) => SelectionError::ObjectIdNotSupported,
        RequestedIdentity::Unspecified => SelectionError::NoIdentity { pod },
    }
}

/// Upstream's redaction of client IDs in messages: the first and last 4 characters of an ID
/// of 8 or more, the rest replaced.
pub fn redact(id: &str) -> String {
    const MARK: &str = "##### REDACTED #####";
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 8 {
        return MARK.to_owned();
    }
    let head: String = chars.iter().take(4).collect();
    let tail: String = chars.iter().skip(chars.len() - 4).collect();
    format!("{head}{MARK}{tail}")
}

/// Picks the first identity, in a fixed order, that `requested` names, and its source.
fn choose(
    mut candidates: Vec<&AzureIdentity>,
    requested: &RequestedIdentity,
    pod: String,
) -> Result<Selected, SelectionError> {
    // Upstream took the first in cache order, which varied; the order here never does.
    candidates.sort_by_key(|identity| IdentityRef::of(identity));
    let identity = candidates
        .into_iter()
        .find(|identity| matches_request(identity, requested))
        .ok_or_else(|| not_found(pod, requested))?;
    let identity_ref = IdentityRef::of(identity);
    token_source(&identity.spec)
        .map(|source| Selected {
            identity: identity_ref.clone(),
            source,
        })
        .map_err(|reason| SelectionError::Unusable {
            identity: identity_ref,
            reason,
        })
}

#[cfg(test)]
mod tests;
