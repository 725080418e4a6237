//! Shared helpers for the emulator's integration tests: start the whole emulator in-process
//! from a small world (every listener on 127.0.0.1:0), talk to ARM over HTTPS trusting its CA,
//! mint tokens for principals of the world, and drive the admin API. IMDS requests and the
//! IMDS tests' world are in [`imds`], Entra requests in [`entra`], JWT decoding in [`jwt`].
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

mod entra;
mod imds;
mod jwt;

// Re-exported so that tests import everything from `common`; each binary uses a subset.
#[allow(unused_imports)]
pub use imds::*;
#[allow(unused_imports)]
pub use jwt::*;

use std::sync::Arc;

use podid_emulator::state::Shared;
use podid_emulator::tokens::{Subject, TokenRequest};
use podid_emulator::{RunningEmulator, StartOptions, WorldFile};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const OTHER_TENANT: &str = "0f0e0d0c-0b0a-4909-8807-060504030201";
pub const SUBSCRIPTION: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";
pub const ARM_AUDIENCE: &str = "https://management.azure.com/";
pub const COMPUTE_API: &str = "2019-12-01";
pub const MSI_API: &str = "2018-11-30";
pub const AUTHORIZATION_API: &str = "2022-04-01";

/// A response: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an ARM error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// `error.message` of an ARM error body.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// The body, which must be JSON: panics when it is empty or not JSON.
    pub fn json(&self) -> Value {
        assert!(
            !self.body.is_null(),
            "the {} answer has no JSON body",
            self.status
        );
        self.body.clone()
    }

    /// `error_description` of an identity-shaped (IMDS or Entra) error body.
    pub fn description(&self) -> String {
        self.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub struct Emulator {
    pub running: RunningEmulator,
    /// Trusts only the emulator's CA; never uses a proxy.
    pub https: reqwest::Client,
    /// For the plain-HTTP admin API and IMDS; never uses a proxy.
    pub http: reqwest::Client,
}

/// A client that trusts exactly `ca_pem` and talks to loopback directly.
pub fn https_client(ca_pem: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("the emulator CA is PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .build()
        .expect("https client")
}

pub fn parse_world(yaml: &str) -> WorldFile {
    WorldFile::parse(yaml).expect("the test world parses")
}

impl Emulator {
    pub async fn start(world: &str) -> Self {
        Self::start_file(parse_world(world)).await
    }

    pub async fn start_file(world: WorldFile) -> Self {
        let running = podid_emulator::start(world, StartOptions::default())
            .await
            .expect("the emulator starts");
        let https = https_client(&running.endpoints.ca_pem);
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client");
        Self {
            running,
            https,
            http,
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.running.shared
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }

    /// A token for a principal of the world — a service principal's client ID or a
    /// user-assigned identity's name — with the given audience and tenant.
    pub fn token_with(
        &self,
        principal: &str,
        audience: &str,
        tenant: &str,
        lifetime_secs: i64,
    ) -> String {
        let (client_id, object_id) = {
            let world = self.shared().world();
            if let Some(sp) = world
                .service_principals
                .get(&principal.to_ascii_lowercase())
            {
                (sp.client_id.clone(), sp.object_id.clone())
            } else {
                let uami = world
                    .identities
                    .values()
                    .find(|i| i.name.eq_ignore_ascii_case(principal))
                    .unwrap_or_else(|| panic!("no principal {principal} in the test world"));
                (uami.client_id.clone(), uami.principal_id.clone())
            }
        };
        let request = TokenRequest {
            tenant_id: tenant.to_string(),
            resource: audience.to_string(),
            client_id,
            object_id,
            subject: Subject::ServicePrincipal { certificate: false },
            version: 1,
            lifetime_secs,
        };
        self.shared()
            .tokens
            .issue(&request, self.shared().clock.unix())
            .expect("token issued")
            .access_token
    }

    /// An ARM token (audience `https://management.azure.com/`, home tenant, one hour).
    pub fn arm_token(&self, principal: &str) -> String {
        self.token_with(principal, ARM_AUDIENCE, TENANT, 3599)
    }

    /// `https://<arm>/<path>`; `path` starts with `/` and may carry a query.
    pub fn arm_url(&self, path: &str) -> String {
        format!("{}{path}", self.running.endpoints.arm)
    }

    /// One ARM request. `token` `None` sends no `Authorization` header.
    pub async fn arm(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.https.request(method, self.arm_url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        reply(req.send().await.expect("ARM answers")).await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.running.endpoints.admin));
        if let Some(body) = body {
            req = req.json(body);
        }
        reply(req.send().await.expect("the admin API answers")).await
    }

    /// `PATCH /admin/knobs` with a JSON merge patch; panics unless accepted.
    pub async fn set_knobs(&self, patch: Value) {
        let r = self
            .admin(Method::PATCH, "/admin/knobs", Some(&patch))
            .await;
        assert_eq!(r.status, StatusCode::OK, "knobs refused: {}", r.body);
    }

    /// Installs a fault rule; panics unless accepted.
    pub async fn add_fault(&self, rule: Value) {
        let r = self.admin(Method::POST, "/admin/faults", Some(&rule)).await;
        assert_eq!(r.status, StatusCode::CREATED, "fault refused: {}", r.body);
    }

    pub async fn advance_clock(&self, seconds: u64) {
        let r = self
            .admin(
                Method::POST,
                "/admin/clock",
                Some(&serde_json::json!({ "advanceSeconds": seconds })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "clock refused: {}", r.body);
    }

    /// `GET /admin/world`.
    pub async fn world(&self) -> Value {
        self.admin(Method::GET, "/admin/world", None).await.body
    }

    /// `GET` of an admin path that must answer 200 with JSON; returns the JSON.
    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self.admin(Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::OK, "admin {path}: {}", r.body);
        r.json()
    }

    /// `(total, count for status)` of one operation in `/admin/counters`.
    pub async fn counter(&self, operation: &str, status: u16) -> (u64, u64) {
        let counters = self.admin_get("/admin/counters").await;
        let op = &counters[operation];
        (
            op["total"].as_u64().unwrap_or(0),
            op["byStatus"][status.to_string()].as_u64().unwrap_or(0),
        )
    }

    /// Sends a request built on [`Emulator::http`] or [`Emulator::https`] and reads the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        reply(request.send().await.expect("the emulator answers")).await
    }
}

/// Reads a whole response into a [`Reply`].
pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a readable body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// `/subscriptions/<SUBSCRIPTION>/resourceGroups/<group>/providers/<type>/<name>`.
pub fn resource_id(group: &str, provider_type: &str, name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{provider_type}/{name}")
}

pub fn uami_id(group: &str, name: &str) -> String {
    resource_id(
        group,
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        name,
    )
}

pub fn vmss_id(group: &str, name: &str) -> String {
    resource_id(group, "Microsoft.Compute/virtualMachineScaleSets", name)
}

pub fn vm_id(group: &str, name: &str) -> String {
    resource_id(group, "Microsoft.Compute/virtualMachines", name)
}

/// `<path>?api-version=<version>`.
pub fn versioned(path: &str, version: &str) -> String {
    format!("{path}?api-version={version}")
}

/// The scale set of [`small_world`], with the compute api-version.
pub fn vmss_path() -> String {
    versioned(&vmss_id(NODE_RG, SCALE_SET), COMPUTE_API)
}

/// Service principals of [`small_world`]: MIC (Virtual Machine Contributor and Managed
/// Identity Operator on `Node-RG`), a Reader of `Node-RG`, an Owner of the subscription, and one
/// with no roles at all.
pub const MIC: &str = "11111111-1111-4111-8111-111111111111";
pub const READER: &str = "22222222-2222-4222-8222-222222222222";
pub const OWNER: &str = "33333333-3333-4333-8333-333333333333";
pub const NOBODY: &str = "44444444-4444-4444-8444-444444444444";
pub const NODE_RG: &str = "Node-RG";
pub const SHARED_RG: &str = "Shared-Identities";
pub const SCALE_SET: &str = "aks-pool-12345678-vmss";
pub const VM: &str = "aks-vm-0";

/// A small world: a scale set (two instances, `id-a` assigned) and a VM (no identity) in
/// `Node-RG`; identities `id-a`..`id-c` in `Node-RG` and `ext-1`..`ext-3` in
/// `Shared-Identities`; the service principals above.
pub fn small_world() -> String {
    format!(
        r#"
tenantId: {TENANT}
extraTenantIds: [{OTHER_TENANT}]
subscriptions:
  - id: {SUBSCRIPTION}
    resourceGroups:
      - {{ name: {NODE_RG}, location: eastus }}
      - {{ name: {SHARED_RG}, location: eastus }}
userAssignedIdentities:
  - {{ resourceGroup: {NODE_RG}, name: id-a, clientId: 0000000a-0000-4000-8000-00000000000a }}
  - {{ resourceGroup: {NODE_RG}, name: id-b, clientId: 0000000b-0000-4000-8000-00000000000b }}
  - {{ resourceGroup: {NODE_RG}, name: id-c, clientId: 0000000c-0000-4000-8000-00000000000c }}
  - {{ resourceGroup: {SHARED_RG}, name: ext-1, clientId: 000000e1-0000-4000-8000-0000000000e1 }}
  - {{ resourceGroup: {SHARED_RG}, name: ext-2, clientId: 000000e2-0000-4000-8000-0000000000e2 }}
  - {{ resourceGroup: {SHARED_RG}, name: ext-3, clientId: 000000e3-0000-4000-8000-0000000000e3 }}
virtualMachineScaleSets:
  - resourceGroup: {NODE_RG}
    name: {SCALE_SET}
    identity: {{ userAssigned: [id-a] }}
    instances: [{{ instanceId: "0" }}, {{ instanceId: "1" }}]
virtualMachines:
  - {{ resourceGroup: {NODE_RG}, name: {VM} }}
servicePrincipals:
  - {{ clientId: {MIC}, displayName: mic, secrets: [mic-secret] }}
  - {{ clientId: {READER}, displayName: reader, secrets: [reader-secret] }}
  - {{ clientId: {OWNER}, displayName: owner, secrets: [owner-secret] }}
  - {{ clientId: {NOBODY}, displayName: nobody, secrets: [nobody-secret] }}
roleAssignments:
  - {{ principal: mic, role: Virtual Machine Contributor, scope: /subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG} }}
  - {{ principal: mic, role: Managed Identity Operator, scope: /subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG} }}
  - {{ principal: reader, role: Reader, scope: /subscriptions/{SUBSCRIPTION}/resourceGroups/{NODE_RG} }}
  - {{ principal: owner, role: Owner, scope: /subscriptions/{SUBSCRIPTION} }}
"#
    )
}
