//! Azure Resource Manager over HTTPS: VM and scale-set identities (GET/PATCH/PUT with
//! long-running operations), user-assigned identities, role assignments, Azure DNS zones and
//! record sets, RBAC and throttling (azure-wire.md §3, docs/emulator.md). One fallback handler serves every path because ARM routing is
//! case-insensitive; [`path::parse`] decides what a path names.

mod admin;
mod auth;
mod compute;
mod dns;
mod error;
mod identity;
mod lro;
mod msi;
mod path;
mod roles;
mod subscriptions;
mod throttle;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use admin::admin_routes;
pub use lro::settle;
pub use throttle::{BucketKnob, ComputePolicies, PolicyKnob};

use crate::armid::ArmId;
use crate::faults::{ErrorFault, Surface};
use crate::journal::{FaultContext, Observed, Operation, observe};
use crate::state::Shared;
use crate::world::World;
use auth::Caller;
use error::ArmError;
use path::{ComputeKind, Route};
use throttle::{Access, Bucket, Throttle};

/// Whether VM/VMSS updates answer at once or through an asynchronous operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LroMode {
    /// 200 with `provisioningState: Updating`, `Azure-AsyncOperation` and `Retry-After`.
    Async,
    /// 200 with `provisioningState: Succeeded`, the change applied, no polling headers.
    Sync,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ArmKnobs {
    /// Most user-assigned identities one PATCH or PUT may add or remove (ARM: 150).
    pub identities_per_request: usize,
    /// `async` (ARM's behaviour) or `sync` updates.
    pub lro_mode: LroMode,
    /// How long an asynchronous update runs, on the emulator's clock.
    pub lro_duration_ms: u64,
    /// When set, updates complete after this many `InProgress` status polls instead of after
    /// `lroDurationMs`.
    pub lro_polls: Option<u32>,
    /// `Retry-After` (whole seconds) on update responses and `InProgress` polls.
    pub retry_after_secs: u64,
    /// Accept an update while another one on the same resource runs (the earlier one completes
    /// first) instead of answering 409 `Conflict`.
    pub allow_concurrent_updates: bool,
    /// Front-door read bucket per subscription and principal (ARM: 250, 25/s).
    pub subscription_reads: BucketKnob,
    /// Front-door write bucket (PUT/PATCH/DELETE) per subscription and principal (ARM: 200, 10/s).
    pub subscription_writes: BucketKnob,
    /// Compute resource-provider policies per subscription and region.
    pub compute_policies: ComputePolicies,
    /// How long a finished operation's status URL still answers; after that it is forgotten
    /// and answers 404, so long runs do not accumulate operations.
    pub operation_retention_secs: u64,
    /// Items per page of Azure DNS lists (zones, record sets) when the request has no `$top`;
    /// more come through `nextLink` (Azure DNS: 100).
    pub dns_page_size: NonZeroUsize,
}

impl Default for ArmKnobs {
    fn default() -> Self {
        Self {
            identities_per_request: 150,
            lro_mode: LroMode::Async,
            lro_duration_ms: 500,
            lro_polls: None,
            retry_after_secs: 1,
            allow_concurrent_updates: false,
            subscription_reads: BucketKnob {
                capacity: 250.0,
                refill_per_second: 25.0,
            },
            subscription_writes: BucketKnob {
                capacity: 200.0,
                refill_per_second: 10.0,
            },
            compute_policies: ComputePolicies::default(),
            operation_retention_secs: 3600,
            dns_page_size: NonZeroUsize::new(100).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// ARM's mutable state besides the world: operations, throttle counters, and the last
/// generation of deleted user-assigned identities (a recreated one gets the next).
#[derive(Debug, Default)]
pub struct ArmInner {
    pub operations: lro::Operations,
    pub throttle: Throttle,
    pub retired_generations: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct ArmState {
    inner: Mutex<ArmInner>,
}

impl ArmState {
    pub fn reset(&self) {
        *self.lock() = ArmInner::default();
    }

    /// Lock order: the world first, then this.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ArmInner> {
        // A poisoned lock means a handler panicked; the counters are still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(shared.clone())
        .layer(axum::middleware::from_fn_with_state(
            Observed {
                shared,
                surface: Surface::Arm,
                machine: None,
                render_fault,
            },
            observe,
        ))
}

/// A request on its way through the handlers, collecting response headers.
pub(crate) struct Call<'a> {
    pub shared: &'a Shared,
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub api_version: String,
    pub caller: Caller,
    pub body: &'a [u8],
    pub now: SystemTime,
    pub headers: Vec<(&'static str, String)>,
    /// The `Host` the client addressed, when it is a plain authority.
    pub host: Option<&'a str>,
}

pub(crate) type Outcome = Result<(StatusCode, Option<Value>), ArmError>;

impl Call<'_> {
    /// The base of URLs this answer hands out (operation status, next page): the host the
    /// client addressed, as ARM answers on the name it was called by (a client that checks
    /// polling URLs against its own endpoint, as MIC does, accepts them), else this emulator's
    /// own ARM URL.
    pub fn base_url(&self) -> String {
        let own = &self.shared.endpoints().arm;
        match (self.host, own.split_once("://")) {
            (Some(host), Some((scheme, _))) => format!("{scheme}://{host}"),
            _ => own.clone(),
        }
    }

    /// 403 `AuthorizationFailed` unless the caller may perform `action` on `scope`.
    pub fn require(&self, world: &World, action: &str, scope: &ArmId) -> Result<(), ArmError> {
        if self.permitted(world, action, scope) {
            Ok(())
        } else {
            Err(error::authorization_failed(
                &self.caller.client_id,
                &self.caller.object_id,
                action,
                scope.as_str(),
            ))
        }
    }

    pub fn permitted(&self, world: &World, action: &str, scope: &ArmId) -> bool {
        crate::rbac::is_permitted(
            &world.role_assignments,
            &self.caller.object_id,
            action,
            scope,
        )
    }

    /// Parses the JSON request body.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ArmError> {
        let body = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            self.body
        };
        serde_json::from_slice(body).map_err(|e| error::invalid_body(&e.to_string()))
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (operation, outcome, extra) = serve(&shared, &method, &uri, &headers, &body);
    respond(&shared, operation, outcome, extra, &headers)
}

fn operation_name(route: &Route, method: &Method) -> Option<&'static str> {
    let m = method.as_str();
    Some(match (route, m) {
        (
            Route::Compute {
                kind: ComputeKind::VirtualMachine,
                ..
            },
            "GET",
        ) => "arm.vm.get",
        (
            Route::Compute {
                kind: ComputeKind::VirtualMachine,
                ..
            },
            "PATCH",
        ) => "arm.vm.patch",
        (
            Route::Compute {
                kind: ComputeKind::VirtualMachine,
                ..
            },
            "PUT",
        ) => "arm.vm.put",
        (
            Route::Compute {
                kind: ComputeKind::ScaleSet,
                ..
            },
            "GET",
        ) => "arm.vmss.get",
        (
            Route::Compute {
                kind: ComputeKind::ScaleSet,
                ..
            },
            "PATCH",
        ) => "arm.vmss.patch",
        (
            Route::Compute {
                kind: ComputeKind::ScaleSet,
                ..
            },
            "PUT",
        ) => "arm.vmss.put",
        (Route::SubscriptionList, "GET") => "arm.subscription.list",
        (Route::VirtualMachineList { .. }, "GET") => "arm.vm.list",
        (Route::ScaleSetList { .. }, "GET") => "arm.vmss.list",
        (Route::ScaleSetInstances { .. }, "GET") => "arm.vmss.vms.list",
        (Route::Operation { .. }, "GET") => "arm.operation.get",
        (Route::Identity { .. }, "GET") => "arm.identity.get",
        (Route::Identity { .. }, "PUT") => "arm.identity.put",
        (Route::Identity { .. }, "DELETE") => "arm.identity.delete",
        (Route::IdentityList { .. }, "GET") => "arm.identity.list",
        (Route::RoleAssignment { .. }, "GET") => "arm.role_assignment.get",
        (Route::RoleAssignment { .. }, "PUT") => "arm.role_assignment.put",
        (Route::RoleAssignment { .. }, "DELETE") => "arm.role_assignment.delete",
        (Route::RoleAssignmentList { .. }, "GET") => "arm.role_assignment.list",
        (Route::DnsZoneList { .. }, "GET") => "arm.dns.zone.list",
        (Route::DnsZone(_), "GET") => "arm.dns.zone.get",
        (Route::RecordSetList { .. }, "GET") => "arm.dns.recordset.list",
        (Route::RecordSet { .. }, "GET") => "arm.dns.recordset.get",
        (Route::RecordSet { .. }, "PUT") => "arm.dns.recordset.put",
        (Route::RecordSet { .. }, "DELETE") => "arm.dns.recordset.delete",
        _ => return None,
    })
}

/// The oldest api-version each family of routes accepts.
fn minimum_api_version(route: &Route) -> &'static str {
    match route {
        Route::Identity { .. } | Route::IdentityList { .. } => "2015-08-31-preview",
        Route::RoleAssignment { .. } | Route::RoleAssignmentList { .. } => "2015-07-01",
        Route::DnsZoneList { .. }
        | Route::DnsZone(_)
        | Route::RecordSetList { .. }
        | Route::RecordSet { .. } => "2016-04-01",
        Route::SubscriptionList => "2016-06-01",
        _ => "2018-06-01",
    }
}

const REJECTED: &str = "arm.rejected";

fn serve(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (&'static str, Outcome, Vec<(&'static str, String)>) {
    let path = uri.path();
    let Some(route) = path::parse(path) else {
        return (
            REJECTED,
            Err(error::not_routed(method.as_str(), path)),
            Vec::new(),
        );
    };
    let Some(operation) = operation_name(&route, method) else {
        return (
            REJECTED,
            Err(error::method_not_allowed(method.as_str())),
            Vec::new(),
        );
    };
    let caller = match authenticate(shared, headers) {
        Ok(caller) => caller,
        Err(e) => return (REJECTED, Err(e), Vec::new()),
    };
    // Tenant-level requests (the subscription list) are under no subscription.
    let subscription = route.subscription().map(str::to_string);
    if let Some(subscription) = &subscription {
        let known = shared
            .world()
            .subscriptions
            .contains_key(&subscription.to_ascii_lowercase());
        if !known {
            return (
                REJECTED,
                Err(error::subscription_not_found(subscription)),
                Vec::new(),
            );
        }
    }
    let api_version = match check_api_version(uri.query(), minimum_api_version(&route)) {
        Ok(v) => v,
        Err(e) => return (REJECTED, Err(e), Vec::new()),
    };
    let mut call = Call {
        shared,
        method,
        path,
        query: uri.query(),
        api_version,
        caller,
        body,
        now: shared.clock.now(),
        headers: Vec::new(),
        // HTTP/2 names it in the URI's authority, HTTP/1.1 in `Host`.
        host: uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                headers
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .filter(|h| is_authority(h)),
    };
    if let Some(subscription) = &subscription
        && let Err(e) = front_door(&mut call, subscription)
    {
        return (operation, Err(e), call.headers);
    }
    lro::settle(shared);
    let outcome = match route {
        Route::SubscriptionList => subscriptions::list(&mut call),
        Route::Compute {
            subscription,
            group,
            kind,
            name,
        } => match *method {
            Method::GET => compute::get(&mut call, &subscription, &group, kind, &name),
            Method::PATCH => compute::update(
                &mut call,
                &subscription,
                &group,
                kind,
                &name,
                identity::Mode::Merge,
            ),
            _ => compute::update(
                &mut call,
                &subscription,
                &group,
                kind,
                &name,
                identity::Mode::Replace,
            ),
        },
        Route::VirtualMachineList {
            subscription,
            group,
        } => compute::list_vms(&mut call, &subscription, &group),
        Route::ScaleSetList {
            subscription,
            group,
        } => compute::list_scale_sets(&mut call, &subscription, &group),
        Route::ScaleSetInstances {
            subscription,
            group,
            name,
        } => compute::list_instances(&mut call, &subscription, &group, &name),
        Route::Operation {
            subscription,
            location,
            id,
        } => compute::operation(&mut call, &subscription, &location, &id),
        Route::Identity {
            subscription,
            group,
            name,
        } => match *method {
            Method::GET => msi::get(&mut call, &subscription, &group, &name),
            Method::PUT => msi::put(&mut call, &subscription, &group, &name),
            _ => msi::delete(&mut call, &subscription, &group, &name),
        },
        Route::IdentityList {
            subscription,
            group,
        } => msi::list(&mut call, &subscription, &group),
        Route::RoleAssignment {
            subscription,
            scope,
            name,
        } => match *method {
            Method::GET => roles::get(&mut call, &scope, &name),
            Method::PUT => roles::put(&mut call, &subscription, &scope, &name),
            _ => roles::delete(&mut call, &scope, &name),
        },
        Route::RoleAssignmentList { scope, .. } => roles::list(&mut call, &scope),
        Route::DnsZoneList {
            subscription,
            group,
        } => dns::list_zones(&mut call, &subscription, &group),
        Route::DnsZone(zone) => dns::get_zone(&mut call, &zone),
        Route::RecordSetList { zone, filter } => dns::list_record_sets(&mut call, &zone, filter),
        Route::RecordSet {
            zone,
            record_type,
            name,
        } => match *method {
            Method::GET => dns::get_record_set(&mut call, &zone, record_type, &name),
            Method::PUT => dns::put_record_set(&mut call, &zone, record_type, &name),
            _ => dns::delete_record_set(&mut call, &zone, record_type, &name),
        },
    };
    (operation, outcome, call.headers)
}

/// The caller named by the request's bearer token (see [`auth::authenticate`]).
/// A host name or address with an optional port, nothing that could change a URL's meaning.
fn is_authority(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, ArmError> {
    let endpoints = shared.endpoints();
    let tenant_id = shared.world().tenant_id.clone();
    auth::authenticate(
        headers,
        &auth::AuthContext {
            tokens: &shared.tokens,
            now: shared.clock.unix(),
            tenant_id: &tenant_id,
            authority: &endpoints.entra,
            own_base_url: &endpoints.arm,
        },
    )
}

/// The front door's per-principal token bucket; its remaining count goes on every response.
fn front_door(call: &mut Call<'_>, subscription: &str) -> Result<(), ArmError> {
    let access = Access::of(call.method.as_str());
    let knob = call.shared.knobs_with(|k| match access {
        Access::Read => k.arm.subscription_reads.clone(),
        Access::Write => k.arm.subscription_writes.clone(),
    });
    let key = (
        subscription.to_ascii_lowercase(),
        call.caller.object_id.to_ascii_lowercase(),
        access,
    );
    let now = call.now;
    let taken = {
        let mut inner = call.shared.arm.lock();
        let bucket = inner.throttle.buckets.entry(key).or_insert(Bucket {
            tokens: knob.capacity,
            updated: now,
        });
        throttle::take_token(bucket, &knob, now)
    };
    match taken {
        Ok(remaining) => {
            call.headers.push((access.header(), remaining.to_string()));
            Ok(())
        }
        Err(retry_after) => {
            call.headers.push((access.header(), "0".into()));
            Err(throttle::subscription_throttled(
                access,
                subscription,
                &call.caller.object_id,
                retry_after,
            ))
        }
    }
}

/// The request's `api-version`, checked against the oldest version the route accepts.
fn check_api_version(query: Option<&str>, minimum: &str) -> Result<String, ArmError> {
    let version = query
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
                .map(|(_, v)| v.into_owned())
        })
        .filter(|v| !v.is_empty())
        .ok_or_else(error::missing_api_version)?;
    match (version_order(&version), version_order(minimum)) {
        (Some(given), Some(min)) if given >= min => Ok(version),
        _ => Err(error::invalid_api_version(&version, minimum)),
    }
}

/// `YYYY-MM-DD[-suffix]` as a sortable key; a preview sorts before the GA of the same date.
fn version_order(version: &str) -> Option<(String, bool)> {
    let date = version.get(..10)?;
    let shape_ok = date.bytes().enumerate().all(|(i, b)| {
        if i == 4 || i == 7 {
            b == b'-'
        } else {
            b.is_ascii_digit()
        }
    });
    let rest = &version[10..];
    let suffix_ok = rest.is_empty()
        || (rest.starts_with('-')
            && rest.len() > 1
            && rest[1..].bytes().all(|b| b.is_ascii_alphanumeric()));
    (shape_ok && suffix_ok).then(|| (date.to_string(), rest.is_empty()))
}

fn respond(
    shared: &Shared,
    operation: &'static str,
    outcome: Outcome,
    extra: Vec<(&'static str, String)>,
    request_headers: &HeaderMap,
) -> Response {
    let (status, body, headers) = match outcome {
        Ok((status, body)) => (status, body, Vec::new()),
        Err(e) => {
            let body = e.body();
            (e.status, Some(body), e.headers)
        }
    };
    let mut response = match body {
        Some(body) => (status, body.to_string()).into_response(),
        None => status.into_response(),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let correlation = request_headers
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| request_id.clone(), str::to_string);
    let stamp = time::OffsetDateTime::from(shared.clock.now());
    let routing = format!(
        "EASTUS:{:04}{:02}{:02}T{:02}{:02}{:02}Z:{request_id}",
        stamp.year(),
        u8::from(stamp.month()),
        stamp.day(),
        stamp.hour(),
        stamp.minute(),
        stamp.second()
    );
    let h = response.headers_mut();
    if status != StatusCode::NO_CONTENT {
        h.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    let common = [
        ("x-ms-request-id", request_id.clone()),
        ("x-ms-correlation-request-id", correlation),
        ("x-ms-routing-request-id", routing),
    ];
    for (name, value) in common.into_iter().chain(extra).chain(headers) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), value);
        }
    }
    response.extensions_mut().insert(Operation(operation));
    response
}

/// `Retry-After` of a 429 fault rule that names none.
const DEFAULT_FAULT_RETRY_AFTER_SECS: u64 = 1;

/// A fault rule's error, answered like any ARM error (envelope and common headers). A 429
/// without `code`, `message` or `body` is the front door's throttle exactly as a real one
/// looks: `SubscriptionRequestsThrottled` naming the subscription and the caller (`unknown`
/// without a valid token), `Retry-After`, and the remaining-requests header at 0. The rule's
/// `code`, `message` and `body` replace their parts; `retryAfter` adds `Retry-After` to any
/// status.
fn render_fault(fault: &ErrorFault, request: &FaultContext<'_>) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut extra = Vec::new();
    let mut error = if status == StatusCode::TOO_MANY_REQUESTS {
        let access = Access::of(request.method);
        // Any path under a subscription, routed or not (a fault may match either).
        let subscription = request
            .path
            .split('/')
            .skip_while(|segment| !segment.eq_ignore_ascii_case("subscriptions"))
            .nth(1)
            .unwrap_or_default();
        let actor = authenticate(request.shared, request.headers)
            .map_or_else(|_| "unknown".to_string(), |caller| caller.object_id);
        extra.push((access.header(), "0".to_string()));
        throttle::subscription_throttled(
            access,
            subscription,
            &actor,
            fault.retry_after.unwrap_or(DEFAULT_FAULT_RETRY_AFTER_SECS),
        )
    } else {
        let error = ArmError::new(
            status,
            default_fault_code(status),
            format!("The emulator answered {status} as a fault rule asked."),
        );
        match fault.retry_after {
            Some(secs) => error.with_header("retry-after", secs.to_string()),
            None => error,
        }
    };
    if let Some(code) = &fault.code {
        error.code = code.clone();
    }
    if let Some(message) = &fault.message {
        error.message = message.clone();
    }
    let mut response = respond(request.shared, "fault", Err(error), extra, request.headers);
    if let Some(body) = &fault.body {
        *response.body_mut() = axum::body::Body::from(body.to_string());
    }
    response
}

fn default_fault_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequest",
        401 => "AuthenticationFailed",
        403 => "AuthorizationFailed",
        404 => "ResourceNotFound",
        409 => "Conflict",
        500 => "InternalServerError",
        503 => "ServiceUnavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn api_versions_are_required_and_checked_against_the_minimum() {
        assert_eq!(
            check_api_version(None, "2018-06-01").map_err(|e| e.code),
            Err("MissingApiVersionParameter".into())
        );
        assert_eq!(
            check_api_version(Some("x=1&api-version="), "2018-06-01").map_err(|e| e.code),
            Err("MissingApiVersionParameter".into())
        );
        assert_eq!(
            check_api_version(Some("api-version=2019-12-01"), "2018-06-01")
                .ok()
                .as_deref(),
            Some("2019-12-01")
        );
        assert!(check_api_version(Some("api-version=2018-06-01"), "2018-06-01").is_ok());
        assert!(check_api_version(Some("api-version=2018-06-01-preview"), "2018-06-01").is_err());
        assert!(
            check_api_version(Some("api-version=2015-08-31-preview"), "2015-08-31-preview").is_ok()
        );
        assert!(check_api_version(Some("api-version=2017-12-01"), "2018-06-01").is_err());
        assert!(check_api_version(Some("api-version=latest"), "2018-06-01").is_err());
        assert!(check_api_version(Some("api-version=2019-12-01-"), "2018-06-01").is_err());
    }

    fn render(fault: serde_json::Value, method: &str, headers: &HeaderMap) -> Response {
        let shared = crate::state::for_tests(
            "tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47\n\
             subscriptions: [{id: 6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c}]\n",
        );
        let fault: ErrorFault = serde_json::from_value(fault).expect("an error fault");
        render_fault(
            &fault,
            &FaultContext {
                shared: &shared,
                method,
                path: "/subscriptions/6A1C4B1E-2f0d-4c5e-9a7b-3d2e1f0a9b8c/resourceGroups/rg",
                headers,
            },
        )
    }

    fn body(response: Response) -> serde_json::Value {
        let bytes =
            futures::executor::block_on(axum::body::to_bytes(response.into_body(), 1 << 16))
                .expect("a body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn a_429_fault_is_the_front_doors_throttle() {
        let r = render(json!({"status": 429}), "PATCH", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        assert_eq!(header("retry-after").as_deref(), Some("1"));
        assert_eq!(
            header("x-ms-ratelimit-remaining-subscription-writes").as_deref(),
            Some("0")
        );
        assert!(header("x-ms-routing-request-id").is_some());
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            body(r)["error"],
            json!({
                "code": "SubscriptionRequestsThrottled",
                "message": "Number of 'write' requests for subscription \
                    '6A1C4B1E-2f0d-4c5e-9a7b-3d2e1f0a9b8c' actor 'unknown' exceeded. Please try \
                    again after '1' seconds after additional tokens are available. Refer to \
                    https://aka.ms/arm-throttling for additional information."
            })
        );
    }

    #[test]
    fn a_faults_code_message_body_and_retry_after_replace_the_defaults() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ms-correlation-request-id",
            HeaderValue::from_static("c-1"),
        );
        let r = render(
            json!({"status": 429, "code": "ResourceRequestsThrottled", "retryAfter": 9}),
            "GET",
            &headers,
        );
        assert_eq!(r.headers()["retry-after"], "9");
        assert_eq!(
            r.headers()["x-ms-ratelimit-remaining-subscription-reads"],
            "0"
        );
        assert_eq!(r.headers()["x-ms-correlation-request-id"], "c-1");
        let b = body(r);
        assert_eq!(b["error"]["code"], "ResourceRequestsThrottled");
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("after '9' seconds"))
        );

        let r = render(
            json!({"status": 503, "retryAfter": 2, "message": "down"}),
            "GET",
            &headers,
        );
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(
            body(r),
            json!({"error": {"code": "ServiceUnavailable", "message": "down"}})
        );

        let r = render(
            json!({"status": 500, "body": {"odd": true}}),
            "GET",
            &headers,
        );
        assert!(r.headers().get("retry-after").is_none());
        assert_eq!(body(r), json!({"odd": true}));
    }
}
