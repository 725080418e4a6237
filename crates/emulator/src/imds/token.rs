//! `GET /metadata/identity/oauth2/token`: admission, identity selection, the resource check,
//! then a cached or freshly minted token in the all-strings body of azure-wire.md §1.4.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::admission::{self, RequestHead, TokenQuery};
use super::cache::{CacheKey, CachedToken};
use super::limits::Throttled;
use super::reply::{self, IdentityError};
use super::selection::{self, Chosen};
use super::{ImdsKnobs, MachineContext, OP_REJECTED, OP_TOKEN};
use crate::clock::unix_seconds;
use crate::entra::aadsts::{AadError, Aadsts};
use crate::tokens::{IssuedToken, Subject, TokenRequest};
use crate::world::stable_guid;

pub fn answer(ctx: &MachineContext, req: &Request) -> Response {
    if let Some(throttled) = req.extensions().get::<Throttled>() {
        let mut error = IdentityError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "Too many requests to this machine's identity endpoint; retry after the \
             Retry-After interval",
        );
        error.retry_after = Some(throttled.retry_after);
        return error.respond(OP_REJECTED);
    }
    let knobs = ctx.knobs();
    let head = RequestHead::of(req.headers(), req.uri().query());
    let query = match admission::admit_token(&head, knobs.strict_metadata_case) {
        Ok(query) => query,
        Err(refusal) => return refusal.identity_error().respond(OP_REJECTED),
    };
    let now = ctx.shared.clock.now();
    let plan = match plan(ctx, &query, &knobs, now) {
        Ok(plan) => plan,
        Err(error) => return error.respond(OP_TOKEN),
    };
    let now_unix = unix_seconds(now);
    let token = match token_for(ctx, plan.clone(), query.bypass_cache, now_unix) {
        Ok(token) => token,
        Err(error) => return error.respond(OP_TOKEN),
    };
    let expires_in = (token.expires_on - now_unix).max(0).to_string();
    let body = TokenBody {
        access_token: &token.access_token,
        client_id: &plan.request.client_id,
        expires_in: &expires_in,
        expires_on: token.expires_on.to_string(),
        ext_expires_in: &expires_in,
        not_before: token.not_before.to_string(),
        resource: &query.resource,
        token_type: "Bearer",
    };
    reply::json(StatusCode::OK, OP_TOKEN, &body)
}

/// The success body: every field a JSON string, as real IMDS sends it.
#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    client_id: &'a str,
    expires_in: &'a str,
    expires_on: String,
    ext_expires_in: &'a str,
    not_before: String,
    resource: &'a str,
    token_type: &'static str,
}

/// What to mint (or find in the cache) for an admitted request.
#[derive(Clone)]
struct Plan {
    key: CacheKey,
    assignment: String,
    request: TokenRequest,
}

fn plan(
    ctx: &MachineContext,
    query: &TokenQuery,
    knobs: &ImdsKnobs,
    now: SystemTime,
) -> Result<Plan, IdentityError> {
    // Assignments finish lazily; a machine must see one that finished even if nobody polled ARM.
    crate::arm::settle(&ctx.shared);
    let world = ctx.shared.world();
    let Some((compute, _)) = world.machine(&ctx.machine) else {
        return Err(IdentityError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "machine {} no longer exists in the emulated world",
                ctx.name
            ),
        ));
    };
    let user = selection::effective_user_assigned(&world.identities, &compute.identity, now);
    let chosen = selection::select(
        compute.identity.system_assigned.as_ref(),
        user,
        query.selector.as_ref(),
    )
    .map_err(|e| IdentityError::invalid_request(e.description()))?;
    if !ctx.shared.resource_known(&world, &query.resource) {
        // IMDS passes Entra ID's refusal on in its own shape.
        let refusal = AadError::new(
            Aadsts::ResourceNotFound,
            &[("resource", &query.resource), ("tenant", &world.tenant_id)],
        );
        return Err(IdentityError::new(
            StatusCode::BAD_REQUEST,
            &refusal.error,
            format!("AADSTS{}: {}", refusal.code, refusal.description),
        ));
    }
    let (identity, assignment, request) = match chosen {
        Chosen::System(sa) => (
            "system".to_string(),
            format!("system@{}", sa.principal_id),
            TokenRequest {
                tenant_id: sa.tenant_id.clone(),
                resource: query.resource.clone(),
                client_id: system_assigned_client_id(&sa.principal_id),
                object_id: sa.principal_id.clone(),
                subject: Subject::ManagedIdentity {
                    mirid: compute.id.to_string(),
                    az_rid: compute.id.to_string(),
                },
                version: knobs.token_version.into(),
                lifetime_secs: i64::from(knobs.token_lifetime_secs),
            },
        ),
        Chosen::User(effective) => {
            let uami = effective.identity;
            (
                uami.id.key().to_string(),
                effective.assignment,
                TokenRequest {
                    tenant_id: uami.tenant_id.clone(),
                    resource: query.resource.clone(),
                    client_id: uami.client_id.clone(),
                    object_id: uami.principal_id.clone(),
                    subject: Subject::ManagedIdentity {
                        mirid: uami.id.to_string(),
                        az_rid: compute.id.to_string(),
                    },
                    version: knobs.token_version.into(),
                    lifetime_secs: i64::from(knobs.token_lifetime_secs),
                },
            )
        }
    };
    Ok(Plan {
        key: CacheKey {
            machine: ctx.name.clone(),
            identity,
            resource: query.resource.clone(),
            version: request.version,
        },
        assignment,
        request,
    })
}

/// The cached token unless `bypass_cache`, else a fresh one (which then goes into the cache).
fn token_for(
    ctx: &MachineContext,
    plan: Plan,
    bypass_cache: bool,
    now: i64,
) -> Result<Arc<IssuedToken>, IdentityError> {
    let cache = &ctx.shared.imds.tokens;
    let lifetime = plan.request.lifetime_secs;
    if !bypass_cache && let Some(token) = cache.get(&plan.key, &plan.assignment, lifetime, now) {
        return Ok(token);
    }
    // Minted outside the cache lock: signing is the slow part, and a rare duplicate mint by
    // two racing requests is harmless.
    let token = ctx
        .shared
        .tokens
        .issue(&plan.request, now)
        .map_err(|error| {
            tracing::error!(machine = %ctx.name, %error, "minting a managed-identity token failed");
            IdentityError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unknown",
                format!("Failed to retrieve token from the Active directory: {error}"),
            )
        })?;
    let token = Arc::new(token);
    cache.put(
        plan.key,
        CachedToken {
            assignment: plan.assignment,
            lifetime_secs: lifetime,
            token: token.clone(),
        },
    );
    Ok(token)
}

/// A stable client ID for a system-assigned identity (the world file does not give one).
pub fn system_assigned_client_id(principal_id: &str) -> String {
    stable_guid(&format!("system-assigned-client/{principal_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_assigned_client_ids_are_stable_guids() {
        assert_eq!(
            system_assigned_client_id("p"),
            system_assigned_client_id("p")
        );
        assert_ne!(
            system_assigned_client_id("p"),
            system_assigned_client_id("q")
        );
    }
}
