//! IMDS, the Instance Metadata Service: one plain-HTTP listener per machine (a VM or one
//! scale-set instance) serving managed-identity tokens, instance metadata and the version list,
//! with the admission rules, identity selection, token caching and rate limits of the real
//! service (docs/azure-wire.md §1).
//!
//! Routing is done by [`route::classify`] in a fallback handler rather than by axum routes,
//! because IMDS matches the `/metadata` segment case-insensitively and axum does not.

mod admission;
mod cache;
mod instance;
mod limits;
mod metadata;
mod reply;
mod route;
mod selection;
mod token;
mod versions;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::faults::{ErrorFault, Surface};
use crate::journal::{Observed, Operation, observe};
use crate::state::Shared;
use crate::world::MachineRef;

pub use cache::TokenCache;
use limits::Limiter;

/// Journal/counter names of what an IMDS listener did.
const OP_TOKEN: Operation = Operation("imds.token");
const OP_INSTANCE: Operation = Operation("imds.instance");
const OP_IDENTITY_INFO: Operation = Operation("imds.identity_info");
const OP_VERSIONS: Operation = Operation("imds.versions");
/// Refused before any work: admission rules, rate limits, unknown paths and verbs.
const OP_REJECTED: Operation = Operation("imds.rejected");

/// IMDS behaviour knobs (`knobs.imds` in the world file, `PATCH /admin/knobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ImdsKnobs {
    /// Milliseconds between ARM completing an identity assignment and the machine's IMDS serving
    /// tokens for it; until then IMDS answers 400 "Identity not found" for it, as real IMDS does
    /// for ~35 s. ARM applies it (`visible_from = completion + delay`) when the assignment
    /// completes. Default 0.
    pub propagation_delay_ms: u64,
    /// Milliseconds a machine's IMDS keeps serving an identity after ARM removed it (ARM sets
    /// `visible_until = completion + delay`). Default 0.
    pub revocation_delay_ms: u64,
    /// Token requests per second each machine's IMDS accepts (a token bucket that holds this
    /// many and refills at this rate on the emulator clock); excess → 429 `too_many_requests`
    /// with an integer `Retry-After`. Real IMDS allows 20 for the identity category. 0 = no
    /// limit. Only the token endpoint is limited.
    pub requests_per_second: u32,
    /// Token requests one machine's IMDS serves at the same time (including any injected
    /// delay); excess → 429 with `Retry-After: 1`. Real IMDS allows 5. 0 = no limit.
    pub max_concurrent: u32,
    /// Require the `Metadata` header value to be exactly `true`. By default any case (`True`)
    /// is accepted, as real IMDS appears to do.
    pub strict_metadata_case: bool,
    /// Lifetime of minted managed-identity tokens in seconds (real: 86399, ~24 h). Lower it to
    /// exercise refresh. Cached tokens are re-minted when this changes.
    pub token_lifetime_secs: u32,
    /// Access-token format: 1 (issuer `https://sts.windows.net/<tenant>/`, `appid`; what
    /// management.azure.com receives) or 2 (v2.0 issuer, `azp`).
    pub token_version: TokenVersion,
}

impl Default for ImdsKnobs {
    fn default() -> Self {
        Self {
            propagation_delay_ms: 0,
            revocation_delay_ms: 0,
            requests_per_second: 20,
            max_concurrent: 5,
            strict_metadata_case: false,
            token_lifetime_secs: 86_399,
            token_version: TokenVersion::V1,
        }
    }
}

/// The access-token format version, written as the number `1` or `2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum TokenVersion {
    V1,
    V2,
}

impl TryFrom<u8> for TokenVersion {
    type Error = String;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::V1),
            2 => Ok(Self::V2),
            other => Err(format!("tokenVersion must be 1 or 2, not {other}")),
        }
    }
}

impl From<TokenVersion> for u8 {
    fn from(value: TokenVersion) -> Self {
        match value {
            TokenVersion::V1 => 1,
            TokenVersion::V2 => 2,
        }
    }
}

/// IMDS state shared by every machine: the token cache and each machine's rate limiter.
#[derive(Debug, Default)]
pub struct ImdsState {
    pub tokens: TokenCache,
    limiters: Mutex<Vec<Arc<Limiter>>>,
}

impl ImdsState {
    /// Forgets cached tokens and refills every rate limiter.
    pub fn reset(&self) {
        self.tokens.clear();
        for limiter in self.lock_limiters().iter() {
            limiter.reset();
        }
    }

    fn new_limiter(&self) -> Arc<Limiter> {
        let limiter = Arc::new(Limiter::default());
        self.lock_limiters().push(limiter.clone());
        limiter
    }

    fn lock_limiters(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Limiter>>> {
        // Poisoning only means a panic elsewhere; the list itself is always consistent.
        self.limiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What every handler of one machine's listener needs.
#[derive(Clone)]
struct MachineContext {
    shared: Arc<Shared>,
    machine: MachineRef,
    name: Arc<str>,
    limiter: Arc<Limiter>,
}

impl MachineContext {
    fn knobs(&self) -> ImdsKnobs {
        self.shared.knobs_with(|k| k.imds.clone())
    }
}

/// The IMDS listener of one machine. The rate limiter wraps the observe layer so a request
/// holds its concurrency slot through injected delays, and 429s are still journaled.
pub fn router(shared: Arc<Shared>, machine: MachineRef, name: &str) -> Router {
    let name: Arc<str> = Arc::from(name);
    let ctx = MachineContext {
        limiter: shared.imds.new_limiter(),
        shared: shared.clone(),
        machine,
        name: name.clone(),
    };
    Router::new()
        .fallback(dispatch)
        .with_state(ctx.clone())
        .layer(axum::middleware::from_fn_with_state(
            Observed {
                shared,
                surface: Surface::Imds,
                machine: Some(name),
                // Nothing about the request changes how this surface renders a fault.
                render_fault: |error, _| render_fault(error),
            },
            observe,
        ))
        .layer(axum::middleware::from_fn_with_state(ctx, limits::enforce))
}

async fn dispatch(State(ctx): State<MachineContext>, req: Request) -> Response {
    use route::Route;
    match (
        route::classify(req.uri().path()),
        req.method() == Method::GET,
    ) {
        (Route::Unknown, _) => reply::IdentityError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "IMDS does not serve {}; the emulator serves /metadata/identity/oauth2/token, \
                 /metadata/identity/info, /metadata/instance and /metadata/versions",
                req.uri().path()
            ),
        )
        .respond(OP_REJECTED),
        (_, false) => {
            let mut response = reply::IdentityError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "IMDS answers only GET on {}, not {}",
                    req.uri().path(),
                    req.method()
                ),
            )
            .respond(OP_REJECTED);
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
            response
        }
        (Route::Token, true) => token::answer(&ctx, &req),
        (Route::IdentityInfo, true) => metadata::identity_info(&ctx, &req),
        (Route::Versions, true) => metadata::versions(&ctx, &req),
        (Route::Instance(path), true) => metadata::instance(&ctx, &req, &path),
    }
}

/// A fault rule's `error` action in the IMDS identity error shape.
fn render_fault(error: &ErrorFault) -> Response {
    reply::fault(
        error.status,
        error.code.as_deref(),
        error.message.as_deref(),
        error.retry_after,
        error.body.as_ref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_default_to_real_imds_limits_and_reject_bad_versions() {
        let knobs: ImdsKnobs = serde_json::from_str("{}").expect("defaults");
        assert_eq!(knobs.requests_per_second, 20);
        assert_eq!(knobs.max_concurrent, 5);
        assert_eq!(knobs.token_lifetime_secs, 86_399);
        let v2: ImdsKnobs = serde_json::from_str(r#"{"tokenVersion":2}"#).expect("v2");
        assert_eq!(v2.token_version, TokenVersion::V2);
        assert_eq!(serde_json::to_value(&v2).expect("json")["tokenVersion"], 2);
        let err = serde_json::from_str::<ImdsKnobs>(r#"{"tokenVersion":3}"#).expect_err("bad");
        assert!(err.to_string().contains("1 or 2"), "{err}");
        assert!(serde_json::from_str::<ImdsKnobs>(r#"{"rps":1}"#).is_err());
    }
}
