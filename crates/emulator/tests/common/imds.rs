//! IMDS: the IMDS tests' world and requests to one machine's IMDS listener.

use super::{Emulator, NODE_RG, Reply, SUBSCRIPTION, TENANT};

/// User-assigned identities of [`imds_world`].
pub const ALPHA_CLIENT: &str = "aaaaaaaa-1111-4111-8111-111111111111";
pub const ALPHA_OBJECT: &str = "a0a0a0a0-1111-4111-8111-111111111111";
pub const BETA_CLIENT: &str = "bbbbbbbb-2222-4222-8222-222222222222";
pub const GAMMA_CLIENT: &str = "cccccccc-3333-4333-8333-333333333333";
/// The resource IMDS token requests name, spelled without the trailing slash.
pub const ARM_RESOURCE: &str = "https://management.azure.com";
pub const OK_QUERY: &str = "api-version=2018-02-01&resource=https://management.azure.com";

/// Machines: `vm-system` (system-assigned + alpha + beta), `vm-single` (alpha), `vm-multi`
/// (alpha + beta), `vm-none` (no identity), scale set `aks-pool-vmss` (gamma) with instances
/// 0 and 3. Rate limits are off unless a test turns them on.
pub fn imds_world() -> String {
    format!(
        r#"
tenantId: {TENANT}
subscriptions:
  - id: {SUBSCRIPTION}
    resourceGroups:
      - name: {NODE_RG}
        location: westeurope
userAssignedIdentities:
  - {{ resourceGroup: {NODE_RG}, name: alpha, clientId: {ALPHA_CLIENT}, principalId: {ALPHA_OBJECT} }}
  - {{ resourceGroup: {NODE_RG}, name: beta, clientId: {BETA_CLIENT} }}
  - {{ resourceGroup: {NODE_RG}, name: gamma, clientId: {GAMMA_CLIENT} }}
virtualMachines:
  - {{ resourceGroup: {NODE_RG}, name: vm-system, vmSize: Standard_D4s_v3, identity: {{ systemAssigned: true, userAssigned: [alpha, beta] }}, machine: {{ privateIp: 10.1.2.3 }} }}
  - {{ resourceGroup: {NODE_RG}, name: vm-single, identity: {{ userAssigned: [alpha] }} }}
  - {{ resourceGroup: {NODE_RG}, name: vm-multi, identity: {{ userAssigned: [alpha, beta] }} }}
  - {{ resourceGroup: {NODE_RG}, name: vm-none }}
virtualMachineScaleSets:
  - resourceGroup: {NODE_RG}
    name: aks-pool-vmss
    identity: {{ userAssigned: [gamma] }}
    instances:
      - {{ instanceId: "0" }}
      - {{ instanceId: "3", machine: {{ privateIp: 10.240.0.9 }} }}
knobs:
  imds: {{ requestsPerSecond: 0, maxConcurrent: 0 }}
"#
    )
}

/// A plain-text answer, read whole.
#[derive(Debug)]
pub struct TextReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub text: String,
}

impl Emulator {
    /// `http://<IMDS of machine><path_and_query>`; a scale-set instance is `<scale set>_<id>`.
    pub fn imds_url(&self, machine: &str, path_and_query: &str) -> String {
        let base = self
            .running
            .endpoints
            .imds
            .get(machine)
            .unwrap_or_else(|| panic!("no IMDS for {machine}"));
        format!("{base}{path_and_query}")
    }

    /// An IMDS GET with `Metadata: true`.
    pub async fn imds_get(&self, machine: &str, path_and_query: &str) -> Reply {
        self.imds_get_with(machine, path_and_query, &[("Metadata", "true")])
            .await
    }

    /// An IMDS GET with exactly these headers.
    pub async fn imds_get_with(
        &self,
        machine: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.get(self.imds_url(machine, path_and_query));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// An IMDS GET with `Metadata: true` for a `format=text` answer, which [`Reply`] does not
    /// keep.
    pub async fn imds_get_text(&self, machine: &str, path_and_query: &str) -> TextReply {
        let response = self
            .http
            .get(self.imds_url(machine, path_and_query))
            .header("Metadata", "true")
            .send()
            .await
            .expect("IMDS answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.expect("a readable body");
        TextReply {
            status,
            content_type,
            text,
        }
    }

    /// An IMDS token request for `resource=https://management.azure.com` plus `extra` query text.
    pub async fn imds_token(&self, machine: &str, extra: &str) -> Reply {
        self.imds_get(
            machine,
            &format!("/metadata/identity/oauth2/token?{OK_QUERY}{extra}"),
        )
        .await
    }
}
