//! The worlds the emulator's own tests use, their constants, and ARM resource IDs in them.

/// The home tenant of [`small_world`] and [`imds_world`] (the seed world's too).
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// A second tenant of [`small_world`].
pub const OTHER_TENANT: &str = "0f0e0d0c-0b0a-4909-8807-060504030201";
/// The subscription of [`small_world`] and [`imds_world`] (the seed world's too).
pub const SUBSCRIPTION: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";
/// A Microsoft.Compute api-version ARM accepts.
pub const COMPUTE_API: &str = "2019-12-01";
/// A Microsoft.ManagedIdentity api-version ARM accepts.
pub const MSI_API: &str = "2018-11-30";
/// A Microsoft.Authorization api-version ARM accepts.
pub const AUTHORIZATION_API: &str = "2022-04-01";

/// Service principal of [`small_world`]: Virtual Machine Contributor and Managed Identity
/// Operator on [`NODE_RG`].
pub const MIC: &str = "11111111-1111-4111-8111-111111111111";
/// Service principal of [`small_world`]: Reader of [`NODE_RG`].
pub const READER: &str = "22222222-2222-4222-8222-222222222222";
/// Service principal of [`small_world`] and [`imds_world`]: Owner of the subscription.
pub const OWNER: &str = "33333333-3333-4333-8333-333333333333";
/// Service principal of [`small_world`] with no role at all.
pub const NOBODY: &str = "44444444-4444-4444-8444-444444444444";
/// The node resource group of both worlds.
pub const NODE_RG: &str = "Node-RG";
/// A second resource group of [`small_world`], holding `ext-1`..`ext-3`.
pub const SHARED_RG: &str = "Shared-Identities";
/// The scale set of [`small_world`].
pub const SCALE_SET: &str = "aks-pool-12345678-vmss";
/// The VM of [`small_world`].
pub const VM: &str = "aks-vm-0";

/// `/subscriptions/<SUBSCRIPTION>/resourceGroups/<group>/providers/<type>/<name>`.
pub fn resource_id(group: &str, provider_type: &str, name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{provider_type}/{name}")
}

/// The ID of a user-assigned identity in [`SUBSCRIPTION`].
pub fn uami_id(group: &str, name: &str) -> String {
    resource_id(
        group,
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        name,
    )
}

/// The ID of a VM scale set in [`SUBSCRIPTION`].
pub fn vmss_id(group: &str, name: &str) -> String {
    resource_id(group, "Microsoft.Compute/virtualMachineScaleSets", name)
}

/// The ID of a VM in [`SUBSCRIPTION`].
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

/// A small world: a scale set [`SCALE_SET`] (instances 0 and 1, `id-a` assigned) and a VM
/// [`VM`] (no identity) in [`NODE_RG`]; identities `id-a`..`id-c` in [`NODE_RG`] and
/// `ext-1`..`ext-3` in [`SHARED_RG`]; the service principals [`MIC`], [`READER`], [`OWNER`] and
/// [`NOBODY`] (secrets `mic-secret`, `reader-secret`, …).
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

/// Client ID of `alpha`, a user-assigned identity of [`imds_world`].
pub const ALPHA_CLIENT: &str = "aaaaaaaa-1111-4111-8111-111111111111";
/// Principal (object) ID of `alpha`.
pub const ALPHA_OBJECT: &str = "a0a0a0a0-1111-4111-8111-111111111111";
/// Client ID of `beta`, a user-assigned identity of [`imds_world`].
pub const BETA_CLIENT: &str = "bbbbbbbb-2222-4222-8222-222222222222";
/// Client ID of `gamma`, a user-assigned identity of [`imds_world`].
pub const GAMMA_CLIENT: &str = "cccccccc-3333-4333-8333-333333333333";

/// Machines: `vm-system` (system-assigned + alpha + beta), `vm-single` (alpha), `vm-multi`
/// (alpha + beta), `vm-none` (no identity), scale set `aks-pool-vmss` (gamma) with instances
/// 0 and 3; [`OWNER`] owns the subscription, to change them through ARM. IMDS rate limits are
/// off unless a test turns them on.
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
servicePrincipals:
  - {{ clientId: {OWNER}, displayName: owner, secrets: [owner-secret] }}
roleAssignments:
  - {{ principal: owner, role: Owner, scope: /subscriptions/{SUBSCRIPTION} }}
knobs:
  imds: {{ requestsPerSecond: 0, maxConcurrent: 0 }}
"#
    )
}
