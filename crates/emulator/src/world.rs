//! The emulated Azure estate. [`WorldFile`] is the documented file format (YAML or JSON, see
//! docs/emulator.md); [`World`] is the live state built from it, changed by ARM calls and the
//! admin API.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::armid::{self, ArmId};
use crate::dns::DnsZone;
use crate::knobs::Knobs;
use crate::rbac::{self, RoleAssignment};

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("cannot read the world file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the world file {path} is not valid: {source}")]
    Parse {
        path: String,
        source: serde_yaml_ng::Error,
    },
    #[error("world: {0}")]
    Invalid(String),
}

// ---------------------------------------------------------------------------------------------
// The file format
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorldFile {
    /// The home tenant of every subscription, identity and service principal.
    pub tenant_id: String,
    /// More tenants that service principals may request tokens in (auxiliary tenants).
    #[serde(default)]
    pub extra_tenant_ids: Vec<String>,
    pub subscriptions: Vec<SubscriptionSpec>,
    #[serde(default)]
    pub user_assigned_identities: Vec<IdentitySpec>,
    #[serde(default)]
    pub virtual_machines: Vec<VirtualMachineSpec>,
    #[serde(default)]
    pub virtual_machine_scale_sets: Vec<ScaleSetSpec>,
    #[serde(default)]
    pub service_principals: Vec<ServicePrincipalSpec>,
    #[serde(default)]
    pub role_assignments: Vec<RoleAssignmentSpec>,
    /// Azure DNS public zones, each created with its apex SOA and NS record sets.
    #[serde(default)]
    pub dns_zones: Vec<DnsZoneSpec>,
    /// Resource applications (App ID URIs or application IDs) tokens may be issued for, besides
    /// [`WELL_KNOWN_RESOURCES`], the service principals' client IDs and the emulator's own ARM
    /// URL. Entra ID and IMDS refuse any other resource (AADSTS500011).
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub listen: ListenSpec,
    #[serde(default)]
    pub knobs: Knobs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub id: String,
    /// The name ARM's subscription list shows; `Azure subscription <n>` (its place in the file,
    /// from 1) when absent.
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub resource_groups: Vec<ResourceGroupSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceGroupSpec {
    pub name: String,
    #[serde(default = "default_location")]
    pub location: String,
}

/// Where a resource lives. `subscription` defaults to the first subscription of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentitySpec {
    #[serde(default)]
    pub subscription: Option<String>,
    pub resource_group: String,
    pub name: String,
    pub client_id: String,
    /// Object (principal) ID; derived from the resource ID when absent.
    #[serde(default)]
    pub principal_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityAssignmentSpec {
    #[serde(default)]
    pub system_assigned: bool,
    /// User-assigned identities by name (looked up in the same subscription) or full resource ID.
    #[serde(default)]
    pub user_assigned: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualMachineSpec {
    #[serde(default)]
    pub subscription: Option<String>,
    pub resource_group: String,
    pub name: String,
    #[serde(default = "default_vm_size")]
    pub vm_size: String,
    #[serde(default)]
    pub identity: IdentityAssignmentSpec,
    #[serde(default)]
    pub machine: MachineSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleSetSpec {
    #[serde(default)]
    pub subscription: Option<String>,
    pub resource_group: String,
    pub name: String,
    #[serde(default = "default_vm_size")]
    pub vm_size: String,
    #[serde(default)]
    pub identity: IdentityAssignmentSpec,
    pub instances: Vec<ScaleSetInstanceSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleSetInstanceSpec {
    pub instance_id: String,
    /// The OS computer name, which Kubernetes uses as the node name (`<prefix>vmss00000a`).
    #[serde(default)]
    pub computer_name: Option<String>,
    #[serde(default)]
    pub machine: MachineSpec,
}

/// What a single machine (a VM or a scale-set instance) exposes: its own IMDS listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MachineSpec {
    /// Listen address of this machine's IMDS. Loopback only; `169.254.169.254:80` only inside a
    /// network namespace that is not PID 1's or that has no route out (see docs/emulator.md).
    #[serde(default = "default_loopback_listen")]
    pub imds: String,
    #[serde(default)]
    pub private_ip: Option<String>,
}

impl MachineSpec {
    fn build(
        &self,
        name: String,
        computer_name: String,
        vm_id: String,
        default_ip: &str,
    ) -> Machine {
        Machine {
            name,
            computer_name,
            vm_id,
            private_ip: self
                .private_ip
                .clone()
                .unwrap_or_else(|| default_ip.to_string()),
            imds_listen: self.imds.clone(),
        }
    }
}

impl Default for MachineSpec {
    fn default() -> Self {
        Self {
            imds: default_loopback_listen(),
            private_ip: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePrincipalSpec {
    pub client_id: String,
    #[serde(default)]
    pub object_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    /// PEM certificates whose keys may sign client assertions.
    #[serde(default)]
    pub certificates: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignmentSpec {
    /// A user-assigned identity name, a service principal's client ID or display name, or an
    /// object ID.
    pub principal: String,
    /// A built-in role name (`Reader`) or role definition GUID.
    pub role: String,
    pub scope: String,
}

/// An Azure DNS zone (`Microsoft.Network/dnsZones`); `subscription` defaults to the first one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsZoneSpec {
    #[serde(default)]
    pub subscription: Option<String>,
    pub resource_group: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenSpec {
    #[serde(default = "default_loopback_listen")]
    pub arm: String,
    #[serde(default = "default_loopback_listen")]
    pub entra: String,
    #[serde(default = "default_loopback_listen")]
    pub admin: String,
    /// Extra DNS names or IP addresses on the serving certificate of ARM and Entra ID (always
    /// `localhost`, 127.0.0.1 and ::1): a node lab serves Azure's public host names from its CA.
    #[serde(default)]
    pub certificate_names: Vec<String>,
}

impl Default for ListenSpec {
    fn default() -> Self {
        Self {
            arm: default_loopback_listen(),
            entra: default_loopback_listen(),
            admin: default_loopback_listen(),
            certificate_names: Vec::new(),
        }
    }
}

pub fn default_loopback_listen() -> String {
    "127.0.0.1:0".to_string()
}

fn default_location() -> String {
    "eastus".to_string()
}

fn default_vm_size() -> String {
    "Standard_DS2_v2".to_string()
}

impl WorldFile {
    pub fn load(path: &std::path::Path) -> Result<Self, WorldError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorldError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|source| WorldError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Self, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(text)
    }
}

// ---------------------------------------------------------------------------------------------
// The live state
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ResourceGroup {
    pub id: ArmId,
    pub subscription: String,
    pub name: String,
    pub location: String,
}

#[derive(Debug, Clone)]
pub struct UserAssignedIdentity {
    pub id: ArmId,
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub client_id: String,
    pub principal_id: String,
    pub tenant_id: String,
    /// Bumped when the identity is deleted and created again: assignments made to an older
    /// generation are dead (ARM shows null IDs, IMDS says "Identity not found").
    pub generation: u64,
}

#[derive(Debug, Clone)]
pub struct SystemAssignedIdentity {
    pub principal_id: String,
    pub tenant_id: String,
}

/// A user-assigned identity as it sits on a VM or scale set.
#[derive(Debug, Clone)]
pub struct AssignedIdentity {
    /// The ID as the assigning request spelled it.
    pub id: ArmId,
    /// The identity generation that was assigned; dead when it differs from the live one.
    pub generation: u64,
    /// IMDS answers for this identity from this moment (ARM success + propagation delay).
    pub visible_from: SystemTime,
}

/// A user-assigned identity removed from a machine that IMDS still serves until `visible_until`
/// (the revocation delay).
#[derive(Debug, Clone)]
pub struct RevokedIdentity {
    pub id: ArmId,
    pub generation: u64,
    pub visible_until: SystemTime,
}

#[derive(Debug, Clone, Default)]
pub struct IdentitySet {
    pub system_assigned: Option<SystemAssignedIdentity>,
    /// Keyed by [`ArmId::key`].
    pub user_assigned: BTreeMap<String, AssignedIdentity>,
    /// Keyed by [`ArmId::key`].
    pub revoked: BTreeMap<String, RevokedIdentity>,
}

/// What a VM and a scale set share.
#[derive(Debug, Clone)]
pub struct Compute {
    pub id: ArmId,
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub vm_size: String,
    /// `vmId` of a VM, `uniqueId` of a scale set.
    pub unique_id: String,
    pub provisioning_state: String,
    pub identity: IdentitySet,
    /// The asynchronous operation running on this resource, if any.
    pub operation_in_flight: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Machine {
    /// VM name, or `<scale set>_<instance id>` for a scale-set instance.
    pub name: String,
    pub computer_name: String,
    pub vm_id: String,
    pub private_ip: String,
    pub imds_listen: String,
}

#[derive(Debug, Clone)]
pub struct VirtualMachine {
    pub compute: Compute,
    pub machine: Machine,
}

#[derive(Debug, Clone)]
pub struct ScaleSetInstance {
    pub instance_id: String,
    pub machine: Machine,
}

#[derive(Debug, Clone)]
pub struct ScaleSet {
    pub compute: Compute,
    pub instances: Vec<ScaleSetInstance>,
}

#[derive(Debug, Clone)]
pub struct ServicePrincipal {
    pub client_id: String,
    pub object_id: String,
    pub display_name: String,
    pub tenant_id: String,
    pub secrets: Vec<String>,
    /// DER of each registered certificate.
    pub certificates: Vec<Vec<u8>>,
}

/// A subscription of the world's tenant.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// As the world file writes it.
    pub id: String,
    pub display_name: String,
}

/// A machine IMDS answers for: a VM, or one instance of a scale set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MachineRef {
    VirtualMachine { key: String },
    ScaleSetInstance { key: String, instance_id: String },
}

#[derive(Debug, Clone)]
pub struct World {
    pub tenant_id: String,
    pub extra_tenant_ids: Vec<String>,
    /// Keyed by lower-case subscription ID.
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Keyed by [`ArmId::key`].
    pub resource_groups: BTreeMap<String, ResourceGroup>,
    pub identities: BTreeMap<String, UserAssignedIdentity>,
    pub virtual_machines: BTreeMap<String, VirtualMachine>,
    pub scale_sets: BTreeMap<String, ScaleSet>,
    /// Keyed by lower-case client ID.
    pub service_principals: BTreeMap<String, ServicePrincipal>,
    pub role_assignments: Vec<RoleAssignment>,
    /// Keyed by [`ArmId::key`] of the zone.
    pub dns_zones: BTreeMap<String, DnsZone>,
    pub resources: KnownResources,
}

/// The first-party Azure resources every tenant has, as App ID URIs (compared ignoring case and
/// a trailing `/`), plus the AKS AAD server application by ID.
pub const WELL_KNOWN_RESOURCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://vault.azure.net",
    "https://managedhsm.azure.net",
    "https://storage.azure.com",
    "https://graph.microsoft.com",
    "https://graph.windows.net",
    "https://database.windows.net",
    "https://ossrdbms-aad.database.windows.net",
    "https://cosmos.azure.com",
    "https://servicebus.azure.net",
    "https://eventhubs.azure.net",
    "https://monitor.azure.com",
    "https://api.loganalytics.io",
    "https://containerregistry.azure.net",
    "https://cognitiveservices.azure.com",
    "https://redis.azure.com",
    "https://azconfig.io",
    "https://batch.core.windows.net",
    "https://datalake.azure.net",
    "https://digitaltwins.azure.net",
    "https://kusto.kusto.windows.net",
    "https://search.azure.com",
    "6dae42f8-4368-4678-94ff-3960e28e3630",
];

/// The resources tokens may be issued for (see [`WorldFile::resources`]).
#[derive(Debug, Clone, Default)]
pub struct KnownResources(BTreeSet<String>);

impl KnownResources {
    fn normalize(resource: &str) -> String {
        resource.trim_end_matches('/').to_ascii_lowercase()
    }

    pub fn new<'a>(resources: impl IntoIterator<Item = &'a str>) -> Self {
        Self(resources.into_iter().map(Self::normalize).collect())
    }

    /// Whether `resource` names one of them, ignoring case and a trailing `/`.
    pub fn contains(&self, resource: &str) -> bool {
        let resource = Self::normalize(resource);
        !resource.is_empty() && self.0.contains(&resource)
    }
}

/// A GUID derived from `seed`, so worlds without explicit object IDs are reproducible.
pub fn stable_guid(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

impl World {
    /// Builds the live state from a file, checking every reference.
    pub fn from_file(file: &WorldFile, now: SystemTime) -> Result<Self, WorldError> {
        let mut world = World {
            tenant_id: file.tenant_id.clone(),
            extra_tenant_ids: file.extra_tenant_ids.clone(),
            subscriptions: BTreeMap::new(),
            resource_groups: BTreeMap::new(),
            identities: BTreeMap::new(),
            virtual_machines: BTreeMap::new(),
            scale_sets: BTreeMap::new(),
            service_principals: BTreeMap::new(),
            role_assignments: Vec::new(),
            dns_zones: BTreeMap::new(),
            resources: KnownResources::new(
                WELL_KNOWN_RESOURCES
                    .iter()
                    .copied()
                    .chain(file.resources.iter().map(String::as_str))
                    .chain(
                        file.service_principals
                            .iter()
                            .map(|sp| sp.client_id.as_str()),
                    ),
            ),
        };
        let first_subscription = file
            .subscriptions
            .first()
            .map(|s| s.id.clone())
            .ok_or_else(|| WorldError::Invalid("at least one subscription is required".into()))?;
        for (place, sub) in file.subscriptions.iter().enumerate() {
            let display_name = sub
                .display_name
                .clone()
                .unwrap_or_else(|| format!("Azure subscription {}", place + 1));
            world.subscriptions.insert(
                sub.id.to_ascii_lowercase(),
                Subscription {
                    id: sub.id.clone(),
                    display_name,
                },
            );
            for rg in &sub.resource_groups {
                let id = armid::resource_group_id(&sub.id, &rg.name);
                world.resource_groups.insert(
                    id.key().to_string(),
                    ResourceGroup {
                        id,
                        subscription: sub.id.clone(),
                        name: rg.name.clone(),
                        location: rg.location.clone(),
                    },
                );
            }
        }
        let sub_of = |s: &Option<String>| s.clone().unwrap_or_else(|| first_subscription.clone());

        for spec in &file.user_assigned_identities {
            let subscription = sub_of(&spec.subscription);
            let rg = world
                .require_group(&subscription, &spec.resource_group)?
                .clone();
            let id = armid::provider_resource_id(
                &subscription,
                &rg.name,
                armid::USER_ASSIGNED_IDENTITY_TYPE,
                &spec.name,
            );
            let principal_id = spec
                .principal_id
                .clone()
                .unwrap_or_else(|| stable_guid(id.key()));
            world.identities.insert(
                id.key().to_string(),
                UserAssignedIdentity {
                    id,
                    subscription,
                    resource_group: rg.name.clone(),
                    name: spec.name.clone(),
                    location: rg.location.clone(),
                    client_id: spec.client_id.clone(),
                    principal_id,
                    tenant_id: file.tenant_id.clone(),
                    generation: 1,
                },
            );
        }

        for spec in &file.virtual_machines {
            let subscription = sub_of(&spec.subscription);
            let compute = world.new_compute(
                &subscription,
                &spec.resource_group,
                armid::VIRTUAL_MACHINE_TYPE,
                &spec.name,
                &spec.vm_size,
                &spec.identity,
                now,
            )?;
            let machine = spec.machine.build(
                spec.name.clone(),
                spec.name.clone(),
                compute.unique_id.clone(),
                "10.240.0.100",
            );
            let key = compute.id.key().to_string();
            world
                .virtual_machines
                .insert(key, VirtualMachine { compute, machine });
        }

        for spec in &file.virtual_machine_scale_sets {
            let subscription = sub_of(&spec.subscription);
            let compute = world.new_compute(
                &subscription,
                &spec.resource_group,
                armid::SCALE_SET_TYPE,
                &spec.name,
                &spec.vm_size,
                &spec.identity,
                now,
            )?;
            let mut instances = Vec::new();
            for (index, inst) in spec.instances.iter().enumerate() {
                let computer_name = inst
                    .computer_name
                    .clone()
                    .unwrap_or_else(|| scale_set_computer_name(&spec.name, &inst.instance_id));
                instances.push(ScaleSetInstance {
                    instance_id: inst.instance_id.clone(),
                    machine: inst.machine.build(
                        format!("{}_{}", spec.name, inst.instance_id),
                        computer_name,
                        stable_guid(&format!("{}/{}", compute.id.key(), inst.instance_id)),
                        &format!("10.240.0.{}", 4 + index),
                    ),
                });
            }
            let key = compute.id.key().to_string();
            world
                .scale_sets
                .insert(key, ScaleSet { compute, instances });
        }

        for spec in &file.service_principals {
            let mut certificates = Vec::new();
            for pem in &spec.certificates {
                certificates.push(certificate_der(pem).map_err(|e| {
                    WorldError::Invalid(format!(
                        "service principal {}: certificate is not PEM: {e}",
                        spec.client_id
                    ))
                })?);
            }
            world.service_principals.insert(
                spec.client_id.to_ascii_lowercase(),
                ServicePrincipal {
                    client_id: spec.client_id.clone(),
                    object_id: spec
                        .object_id
                        .clone()
                        .unwrap_or_else(|| stable_guid(&format!("sp/{}", spec.client_id))),
                    display_name: spec
                        .display_name
                        .clone()
                        .unwrap_or_else(|| spec.client_id.clone()),
                    tenant_id: file.tenant_id.clone(),
                    secrets: spec.secrets.clone(),
                    certificates,
                },
            );
        }

        for spec in &file.dns_zones {
            let subscription = sub_of(&spec.subscription);
            let rg = world.require_group(&subscription, &spec.resource_group)?;
            let zone = DnsZone::new(&subscription, &rg.name, &spec.name);
            let key = zone.id.key().to_string();
            if world.dns_zones.insert(key, zone).is_some() {
                return Err(WorldError::Invalid(format!(
                    "DNS zone {:?} is declared twice in resource group {:?}",
                    spec.name, spec.resource_group
                )));
            }
        }

        for spec in &file.role_assignments {
            let role = rbac::find_role(&spec.role).ok_or_else(|| {
                WorldError::Invalid(format!(
                    "role assignment for {}: unknown role {:?}; built-in roles are {}",
                    spec.principal,
                    spec.role,
                    rbac::BUILTIN_ROLES
                        .iter()
                        .map(|r| r.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let principal_id = world.resolve_principal(&spec.principal);
            let scope = ArmId::new(&spec.scope);
            world.role_assignments.push(RoleAssignment {
                name: stable_guid(&format!("{}|{}|{}", principal_id, role.id, scope.key())),
                principal_id,
                role,
                scope,
            });
        }
        Ok(world)
    }

    fn require_group(&self, subscription: &str, group: &str) -> Result<&ResourceGroup, WorldError> {
        let id = armid::resource_group_id(subscription, group);
        self.resource_groups.get(id.key()).ok_or_else(|| {
            WorldError::Invalid(format!(
                "resource group {group:?} of subscription {subscription} is not declared under subscriptions[].resourceGroups"
            ))
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn new_compute(
        &self,
        subscription: &str,
        group: &str,
        provider_type: &str,
        name: &str,
        vm_size: &str,
        identity: &IdentityAssignmentSpec,
        now: SystemTime,
    ) -> Result<Compute, WorldError> {
        let rg = self.require_group(subscription, group)?;
        let id = armid::provider_resource_id(subscription, &rg.name, provider_type, name);
        let mut set = IdentitySet::default();
        if identity.system_assigned {
            set.system_assigned = Some(SystemAssignedIdentity {
                principal_id: stable_guid(&format!("system/{}", id.key())),
                tenant_id: self.tenant_id.clone(),
            });
        }
        for reference in &identity.user_assigned {
            let uami = self.find_identity(subscription, reference).ok_or_else(|| {
                WorldError::Invalid(format!(
                    "{name}: user-assigned identity {reference:?} is not declared under userAssignedIdentities"
                ))
            })?;
            set.user_assigned.insert(
                uami.id.key().to_string(),
                AssignedIdentity {
                    id: uami.id.clone(),
                    generation: uami.generation,
                    visible_from: now,
                },
            );
        }
        Ok(Compute {
            unique_id: stable_guid(id.key()),
            id,
            subscription: subscription.to_string(),
            resource_group: rg.name.clone(),
            name: name.to_string(),
            location: rg.location.clone(),
            vm_size: vm_size.to_string(),
            provisioning_state: "Succeeded".to_string(),
            identity: set,
            operation_in_flight: None,
        })
    }

    /// A user-assigned identity by full resource ID, or by name within `subscription`.
    pub fn find_identity(
        &self,
        subscription: &str,
        reference: &str,
    ) -> Option<&UserAssignedIdentity> {
        if reference.starts_with('/') {
            return self.identities.get(&armid::normalize(reference));
        }
        self.identities.values().find(|i| {
            i.subscription.eq_ignore_ascii_case(subscription)
                && i.name.eq_ignore_ascii_case(reference)
        })
    }

    /// Resolves a role-assignment principal: identity name, service principal client ID or
    /// display name, else the value itself as an object ID.
    pub fn resolve_principal(&self, principal: &str) -> String {
        if let Some(i) = self.identities.values().find(|i| {
            i.name.eq_ignore_ascii_case(principal) || i.client_id.eq_ignore_ascii_case(principal)
        }) {
            return i.principal_id.clone();
        }
        if let Some(sp) = self.service_principals.values().find(|sp| {
            sp.client_id.eq_ignore_ascii_case(principal)
                || sp.display_name.eq_ignore_ascii_case(principal)
        }) {
            return sp.object_id.clone();
        }
        principal.to_string()
    }

    /// Every machine IMDS answers for, with its listen address.
    pub fn machines(&self) -> Vec<(MachineRef, &Machine)> {
        let vms = self
            .virtual_machines
            .iter()
            .map(|(key, vm)| (MachineRef::VirtualMachine { key: key.clone() }, &vm.machine));
        let instances = self.scale_sets.iter().flat_map(|(key, ss)| {
            ss.instances.iter().map(move |inst| {
                (
                    MachineRef::ScaleSetInstance {
                        key: key.clone(),
                        instance_id: inst.instance_id.clone(),
                    },
                    &inst.machine,
                )
            })
        });
        vms.chain(instances).collect()
    }

    /// The VM or scale set whose identities a machine uses, and the machine itself.
    pub fn machine(&self, machine: &MachineRef) -> Option<(&Compute, &Machine)> {
        match machine {
            MachineRef::VirtualMachine { key } => self
                .virtual_machines
                .get(key)
                .map(|vm| (&vm.compute, &vm.machine)),
            MachineRef::ScaleSetInstance { key, instance_id } => {
                let ss = self.scale_sets.get(key)?;
                let inst = ss
                    .instances
                    .iter()
                    .find(|i| &i.instance_id == instance_id)?;
                Some((&ss.compute, &inst.machine))
            }
        }
    }
}

/// The computer name AKS gives scale-set instances: the scale set's name and the instance ID in
/// base 36, zero-padded to six digits (`aks-pool-1234-vmss` + `00000a`).
pub fn scale_set_computer_name(scale_set: &str, instance_id: &str) -> String {
    let mut n: u64 = instance_id.parse().unwrap_or(0);
    let mut digits = Vec::new();
    loop {
        let d = u8::try_from(n % 36).unwrap_or(0);
        digits.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        n /= 36;
        if n == 0 {
            break;
        }
    }
    while digits.len() < 6 {
        digits.push(b'0');
    }
    digits.reverse();
    format!("{scale_set}{}", String::from_utf8_lossy(&digits))
}

fn certificate_der(pem: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORLD: &str = r#"
tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
subscriptions:
  - id: 6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c
    resourceGroups:
      - name: Node-RG
        location: japaneast
userAssignedIdentities:
  - resourceGroup: node-rg
    name: DEMO
    clientId: cb5569f2-8d09-4de1-a007-e02058e11d15
virtualMachineScaleSets:
  - resourceGroup: Node-RG
    name: aks-agentpool-1234-vmss
    identity: { userAssigned: [DEMO] }
    instances:
      - instanceId: "0"
      - instanceId: "10"
virtualMachines:
  - resourceGroup: Node-RG
    name: standalone
    identity: { systemAssigned: true }
roleAssignments:
  - principal: DEMO
    role: Reader
    scope: /subscriptions/6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c/resourceGroups/Node-RG
"#;

    #[test]
    fn a_world_file_builds_with_every_reference_resolved() {
        let file = WorldFile::parse(WORLD).expect("parses");
        let world = World::from_file(&file, SystemTime::now()).expect("valid");
        assert_eq!(world.machines().len(), 3);
        let ss = world.scale_sets.values().next().expect("scale set");
        assert_eq!(ss.compute.identity.user_assigned.len(), 1);
        assert_eq!(
            ss.instances[1].machine.computer_name,
            "aks-agentpool-1234-vmss00000a"
        );
        assert_eq!(ss.compute.location, "japaneast");
        let demo = world
            .find_identity("6A1C4B1E-2f0d-4c5e-9a7b-3d2e1f0a9b8c", "demo")
            .expect("found");
        assert_eq!(world.role_assignments[0].principal_id, demo.principal_id);
    }

    #[test]
    fn unknown_references_are_named_in_the_error() {
        let file =
            WorldFile::parse(&WORLD.replace("userAssigned: [DEMO]", "userAssigned: [MISSING]"))
                .expect("parses");
        let err = World::from_file(&file, SystemTime::now()).expect_err("must fail");
        assert!(err.to_string().contains("MISSING"), "{err}");
        let file =
            WorldFile::parse(&WORLD.replace("role: Reader", "role: Wizard")).expect("parses");
        let err = World::from_file(&file, SystemTime::now()).expect_err("must fail");
        assert!(err.to_string().contains("Wizard"), "{err}");
    }

    #[test]
    fn dns_zones_need_a_declared_group_and_a_unique_name() {
        let with =
            |zones: &str| WorldFile::parse(&format!("{WORLD}dnsZones: {zones}\n")).expect("parses");
        let world = World::from_file(
            &with("[{resourceGroup: node-rg, name: example.com}]"),
            SystemTime::now(),
        )
        .expect("valid");
        let zone = world.dns_zones.values().next().expect("the zone");
        assert_eq!(zone.resource_group, "Node-RG");
        assert_eq!(zone.record_sets.len(), 2);
        let err = World::from_file(
            &with("[{resourceGroup: dns-rg, name: example.com}]"),
            SystemTime::now(),
        )
        .expect_err("no such group");
        assert!(err.to_string().contains("dns-rg"), "{err}");
        let twice = "[{resourceGroup: Node-RG, name: example.com}, {resourceGroup: node-rg, name: Example.com}]";
        let err = World::from_file(&with(twice), SystemTime::now()).expect_err("declared twice");
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = WorldFile::parse(&WORLD.replace("tenantId:", "tenant:")).expect_err("must fail");
        assert!(err.to_string().contains("tenant"), "{err}");
    }

    #[test]
    fn known_resources_are_the_well_known_ones_the_listed_ones_and_the_apps() {
        let world = WORLD.to_string()
            + "resources: [api://my-app/]\nservicePrincipals: [{clientId: 0f1e2d3c-0000-4000-8000-000000000001}]\n";
        let file = WorldFile::parse(&world).expect("parses");
        let world = World::from_file(&file, SystemTime::now()).expect("valid");
        for known in [
            "https://management.azure.com/",
            "https://Vault.Azure.Net",
            "https://storage.azure.com/",
            "API://my-app",
            "0F1E2D3C-0000-4000-8000-000000000001",
        ] {
            assert!(world.resources.contains(known), "{known}");
        }
        for unknown in [
            "https://unknown.example",
            "",
            "/",
            "https://management.azure.com/x",
        ] {
            assert!(!world.resources.contains(unknown), "{unknown:?}");
        }
    }

    #[test]
    fn stable_guids_are_stable_and_well_formed() {
        assert_eq!(stable_guid("x"), stable_guid("x"));
        assert_ne!(stable_guid("x"), stable_guid("y"));
        assert!(uuid::Uuid::parse_str(&stable_guid("x")).is_ok());
    }
}
