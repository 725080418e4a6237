//! Shared by the `imds_*` tests: a small world, the emulator started in-process on loopback,
//! and HTTP helpers for its IMDS listeners and admin API.
#![allow(dead_code)] // each test binary uses a different subset

use podid_emulator::{RunningEmulator, StartOptions, WorldFile};
use serde_json::Value;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const SUBSCRIPTION: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";
pub const ALPHA_CLIENT: &str = "aaaaaaaa-1111-4111-8111-111111111111";
pub const ALPHA_OBJECT: &str = "a0a0a0a0-1111-4111-8111-111111111111";
pub const BETA_CLIENT: &str = "bbbbbbbb-2222-4222-8222-222222222222";
pub const GAMMA_CLIENT: &str = "cccccccc-3333-4333-8333-333333333333";
pub const ARM: &str = "https://management.azure.com";
pub const OK_QUERY: &str = "api-version=2018-02-01&resource=https://management.azure.com";

/// Machines: `vm-system` (system-assigned + alpha + beta), `vm-single` (alpha), `vm-multi`
/// (alpha + beta), `vm-none` (no identity), scale set `aks-pool-vmss` (gamma) with instances
/// 0 and 3. Rate limits are off unless a test turns them on.
pub const WORLD: &str = r#"
tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
subscriptions:
  - id: 6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c
    resourceGroups:
      - name: Node-RG
        location: westeurope
userAssignedIdentities:
  - { resourceGroup: Node-RG, name: alpha, clientId: aaaaaaaa-1111-4111-8111-111111111111, principalId: a0a0a0a0-1111-4111-8111-111111111111 }
  - { resourceGroup: Node-RG, name: beta, clientId: bbbbbbbb-2222-4222-8222-222222222222 }
  - { resourceGroup: Node-RG, name: gamma, clientId: cccccccc-3333-4333-8333-333333333333 }
virtualMachines:
  - { resourceGroup: Node-RG, name: vm-system, vmSize: Standard_D4s_v3, identity: { systemAssigned: true, userAssigned: [alpha, beta] }, machine: { privateIp: 10.1.2.3 } }
  - { resourceGroup: Node-RG, name: vm-single, identity: { userAssigned: [alpha] } }
  - { resourceGroup: Node-RG, name: vm-multi, identity: { userAssigned: [alpha, beta] } }
  - { resourceGroup: Node-RG, name: vm-none }
virtualMachineScaleSets:
  - resourceGroup: Node-RG
    name: aks-pool-vmss
    identity: { userAssigned: [gamma] }
    instances:
      - { instanceId: "0" }
      - { instanceId: "3", machine: { privateIp: 10.240.0.9 } }
knobs:
  imds: { requestsPerSecond: 0, maxConcurrent: 0 }
"#;

pub fn identity_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/Node-RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

pub fn compute_id(kind: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/Node-RG/providers/Microsoft.Compute/{kind}/{name}"
    )
}

pub struct Imds {
    pub emulator: RunningEmulator,
    pub http: reqwest::Client,
}

/// An HTTP answer, read whole.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error_description` of an identity-shaped error.
    pub fn description(&self) -> String {
        self.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Imds {
    pub async fn start() -> Self {
        Self::start_with(WORLD).await
    }

    pub async fn start_with(yaml: &str) -> Self {
        let world = WorldFile::parse(yaml).expect("the test world parses");
        let emulator = podid_emulator::start(world, StartOptions::default())
            .await
            .expect("the emulator starts");
        // Loopback only: never let an environment proxy see these requests.
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        Self { emulator, http }
    }

    pub fn url(&self, machine: &str, path_and_query: &str) -> String {
        let base = self
            .emulator
            .endpoints
            .imds
            .get(machine)
            .unwrap_or_else(|| panic!("no IMDS for {machine}"));
        format!("{base}{path_and_query}")
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        Reply {
            status,
            headers,
            text,
        }
    }

    /// GET with `Metadata: true`.
    pub async fn get(&self, machine: &str, path_and_query: &str) -> Reply {
        self.get_with(machine, path_and_query, &[("Metadata", "true")])
            .await
    }

    pub async fn get_with(
        &self,
        machine: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.get(self.url(machine, path_and_query));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// A token request for `resource=https://management.azure.com` plus `extra` query text.
    pub async fn token(&self, machine: &str, extra: &str) -> Reply {
        self.get(
            machine,
            &format!("/metadata/identity/oauth2/token?{OK_QUERY}{extra}"),
        )
        .await
    }

    pub fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.emulator.endpoints.admin)
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        self.send(self.http.get(self.admin(path))).await.json()
    }

    pub async fn admin_send(&self, method: reqwest::Method, path: &str, body: Value) -> Reply {
        self.send(self.http.request(method, self.admin(path)).json(&body))
            .await
    }

    pub async fn patch_knobs(&self, imds: Value) {
        let reply = self
            .admin_send(
                reqwest::Method::PATCH,
                "/admin/knobs",
                serde_json::json!({ "imds": imds }),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }

    pub async fn advance_clock(&self, seconds: u64) {
        let reply = self
            .admin_send(
                reqwest::Method::POST,
                "/admin/clock",
                serde_json::json!({ "advanceSeconds": seconds }),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
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
}

/// The claims of a JWT, decoded without verification.
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("payload is base64url");
    serde_json::from_slice(&bytes).expect("payload is JSON")
}
