//! Virtual machines and scale sets as the identity code sees them: which one, its
//! provisioning state, and its identities.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::resource_id::ResourceId;

/// A VM or a VM scale set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MachineKind {
    VirtualMachine,
    VirtualMachineScaleSet,
}

impl MachineKind {
    /// The resource type under `Microsoft.Compute`.
    pub fn resource_type(self) -> &'static str {
        match self {
            MachineKind::VirtualMachine => "virtualMachines",
            MachineKind::VirtualMachineScaleSet => "virtualMachineScaleSets",
        }
    }
}

/// The ARM ID of a VM or scale set: the thing identities are assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MachineId {
    kind: MachineKind,
    id: ResourceId,
}

impl MachineId {
    pub fn new(kind: MachineKind, subscription_id: &str, resource_group: &str, name: &str) -> Self {
        Self {
            kind,
            id: ResourceId::resource(
                subscription_id,
                resource_group,
                "Microsoft.Compute",
                &[(kind.resource_type(), name)],
            ),
        }
    }

    /// The machine a resource ID names: a VM, a scale set, or a scale-set instance (whose
    /// identities are its scale set's). `None` for anything else.
    pub fn from_resource_id(id: &ResourceId) -> Option<Self> {
        let group = id.resource_group()?;
        if !id.namespace()?.eq_ignore_ascii_case("Microsoft.Compute") {
            return None;
        }
        let resources: Vec<(&str, &str)> = id.resources().collect();
        let is =
            |text: &str, expected: MachineKind| text.eq_ignore_ascii_case(expected.resource_type());
        let kind = match resources.as_slice() {
            [(t, _)] if is(t, MachineKind::VirtualMachine) => MachineKind::VirtualMachine,
            [(t, _)] if is(t, MachineKind::VirtualMachineScaleSet) => {
                MachineKind::VirtualMachineScaleSet
            }
            [(t, _), (child, _)]
                if is(t, MachineKind::VirtualMachineScaleSet)
                    && is(child, MachineKind::VirtualMachine) =>
            {
                MachineKind::VirtualMachineScaleSet
            }
            _ => return None,
        };
        let (_, name) = resources[0];
        Some(Self::new(kind, id.subscription_id(), group, name))
    }

    pub fn kind(&self) -> MachineKind {
        self.kind
    }

    pub fn name(&self) -> &str {
        self.id.name()
    }

    pub fn resource_id(&self) -> &ResourceId {
        &self.id
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.id.fmt(f)
    }
}

/// The `identity.type` of a machine: which kinds of identity it has. Parsed in any letter
/// case, with or without the space after the comma; written canonically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IdentityType {
    pub system_assigned: bool,
    pub user_assigned: bool,
}

impl IdentityType {
    pub const NONE: Self = Self {
        system_assigned: false,
        user_assigned: false,
    };
    pub const SYSTEM_ASSIGNED: Self = Self {
        system_assigned: true,
        user_assigned: false,
    };
    pub const USER_ASSIGNED: Self = Self {
        system_assigned: false,
        user_assigned: true,
    };
    pub const SYSTEM_AND_USER_ASSIGNED: Self = Self {
        system_assigned: true,
        user_assigned: true,
    };

    /// `None` for a value ARM does not define. The empty string is `None` (no identity), as
    /// upstream read it.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("None") {
            return Some(Self::NONE);
        }
        let mut kind = Self::NONE;
        for part in text.split(',').map(str::trim) {
            let flag = if part.eq_ignore_ascii_case("SystemAssigned") {
                &mut kind.system_assigned
            } else if part.eq_ignore_ascii_case("UserAssigned") {
                &mut kind.user_assigned
            } else {
                return None;
            };
            if *flag {
                return None;
            }
            *flag = true;
        }
        Some(kind)
    }

    pub fn as_str(self) -> &'static str {
        match (self.system_assigned, self.user_assigned) {
            (false, false) => "None",
            (true, false) => "SystemAssigned",
            (false, true) => "UserAssigned",
            (true, true) => "SystemAssigned, UserAssigned",
        }
    }
}

impl fmt::Display for IdentityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What ARM shows for one user-assigned identity of a machine (both `None` when the identity
/// was deleted since it was assigned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAssignedIdentity {
    pub principal_id: Option<String>,
    pub client_id: Option<String>,
}

/// A machine's `identity`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineIdentity {
    pub identity_type: IdentityType,
    /// The system-assigned identity's object ID.
    pub principal_id: Option<String>,
    pub tenant_id: Option<String>,
    /// Keyed by identity ID, compared ignoring case; the key keeps ARM's casing.
    pub user_assigned: BTreeMap<ResourceId, UserAssignedIdentity>,
}

/// A VM or scale set as ARM's GET shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub id: MachineId,
    pub location: Option<String>,
    /// `properties.provisioningState`, e.g. `Succeeded`, `Updating`, `Deleting`.
    pub provisioning_state: Option<String>,
    pub identity: MachineIdentity,
}

impl Machine {
    /// Whether ARM is deleting the machine: upstream never PATCHed one in that state.
    pub fn is_deleting(&self) -> bool {
        self.provisioning_state
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Deleting"))
    }

    /// Whether an update of the machine is still running (`Creating`, `Updating`, …: any state
    /// but `Succeeded`, `Failed`, `Canceled` and `Deleting`). Its identities may not be in
    /// force yet, and another PATCH would collide with the running one.
    pub fn is_updating(&self) -> bool {
        self.provisioning_state.as_deref().is_some_and(|state| {
            !["Succeeded", "Failed", "Canceled", "Deleting"]
                .iter()
                .any(|settled| state.eq_ignore_ascii_case(settled))
        })
    }

    /// Reads a GET body for `id`; the reason when it is not a machine.
    pub(crate) fn from_body(id: MachineId, body: &[u8]) -> Result<Self, String> {
        let body: Body =
            serde_json::from_slice(body).map_err(|e| format!("not a VM or scale set: {e}"))?;
        let identity = match body.identity {
            None => MachineIdentity::default(),
            Some(identity) => {
                let text = identity.kind.unwrap_or_default();
                let identity_type = IdentityType::parse(&text)
                    .ok_or_else(|| format!("unknown identity type {text:?}"))?;
                let mut user_assigned = BTreeMap::new();
                for (key, value) in identity.user_assigned_identities.unwrap_or_default() {
                    let uami = ResourceId::parse(&key).map_err(|e| e.to_string())?;
                    let value = value.unwrap_or_default();
                    user_assigned.insert(
                        uami,
                        UserAssignedIdentity {
                            principal_id: value.principal_id,
                            client_id: value.client_id,
                        },
                    );
                }
                MachineIdentity {
                    identity_type,
                    principal_id: identity.principal_id,
                    tenant_id: identity.tenant_id,
                    user_assigned,
                }
            }
        };
        Ok(Self {
            id,
            location: body.location,
            provisioning_state: body.properties.and_then(|p| p.provisioning_state),
            identity,
        })
    }
}

#[derive(Deserialize)]
struct Body {
    location: Option<String>,
    identity: Option<IdentityBody>,
    properties: Option<PropertiesBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PropertiesBody {
    provisioning_state: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    principal_id: Option<String>,
    tenant_id: Option<String>,
    user_assigned_identities: Option<BTreeMap<String, Option<UserAssignedBody>>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UserAssignedBody {
    principal_id: Option<String>,
    client_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c";

    #[test]
    fn identity_types_parse_leniently_and_print_canonically() {
        for (text, expected) in [
            ("", IdentityType::NONE),
            ("None", IdentityType::NONE),
            ("none", IdentityType::NONE),
            ("SystemAssigned", IdentityType::SYSTEM_ASSIGNED),
            ("userAssigned", IdentityType::USER_ASSIGNED),
            (
                "SystemAssigned, UserAssigned",
                IdentityType::SYSTEM_AND_USER_ASSIGNED,
            ),
            (
                "SystemAssigned,UserAssigned",
                IdentityType::SYSTEM_AND_USER_ASSIGNED,
            ),
            (
                "userassigned , systemassigned",
                IdentityType::SYSTEM_AND_USER_ASSIGNED,
            ),
        ] {
            assert_eq!(IdentityType::parse(text), Some(expected), "{text:?}");
        }
        for text in [
            "Both",
            "SystemAssigned,",
            "UserAssigned,UserAssigned",
            "None,UserAssigned",
        ] {
            assert_eq!(IdentityType::parse(text), None, "{text:?}");
        }
        for kind in [
            IdentityType::NONE,
            IdentityType::SYSTEM_ASSIGNED,
            IdentityType::USER_ASSIGNED,
            IdentityType::SYSTEM_AND_USER_ASSIGNED,
        ] {
            assert_eq!(IdentityType::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(
            IdentityType::SYSTEM_AND_USER_ASSIGNED.to_string(),
            "SystemAssigned, UserAssigned"
        );
    }

    #[test]
    fn machine_ids_from_vms_scale_sets_and_instances() {
        let vmss = MachineId::new(MachineKind::VirtualMachineScaleSet, SUB, "Node-RG", "pool0");
        assert_eq!(
            vmss.to_string(),
            format!(
                "/subscriptions/{SUB}/resourceGroups/Node-RG/providers/Microsoft.Compute/virtualMachineScaleSets/pool0"
            )
        );
        let instance =
            ResourceId::from_provider_id(&format!("azure://{vmss}/virtualMachines/3")).unwrap();
        assert_eq!(MachineId::from_resource_id(&instance), Some(vmss.clone()));
        assert_eq!(MachineId::from_resource_id(vmss.resource_id()), Some(vmss));

        let vm = ResourceId::parse(&format!(
            "/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.compute/VIRTUALMACHINES/node-1"
        ))
        .unwrap();
        let id = MachineId::from_resource_id(&vm).unwrap();
        assert_eq!(id.kind(), MachineKind::VirtualMachine);
        assert_eq!(id.name(), "node-1");

        for other in [
            format!("/subscriptions/{SUB}/resourceGroups/rg"),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualMachines/x"
            ),
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/disks/x"),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/x/extensions/y"
            ),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/x/extensions/y"
            ),
            format!("/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines/x"),
        ] {
            assert_eq!(
                MachineId::from_resource_id(&ResourceId::parse(&other).unwrap()),
                None,
                "{other}"
            );
        }
    }

    fn vmss() -> MachineId {
        MachineId::new(MachineKind::VirtualMachineScaleSet, SUB, "rg", "pool0")
    }

    #[test]
    fn a_get_body_gives_state_and_identities() {
        let body = format!(
            r#"{{"name":"pool0","location":"eastus","identity":{{"type":"SystemAssigned, UserAssigned",
            "principalId":"p","tenantId":"t","userAssignedIdentities":{{
              "/subscriptions/{SUB}/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-a":{{"principalId":"pa","clientId":"ca"}},
              "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/gone":{{"principalId":null,"clientId":null}}}}}},
            "properties":{{"provisioningState":"Updating"}}}}"#
        );
        let machine = Machine::from_body(vmss(), body.as_bytes()).unwrap();
        assert_eq!(machine.location.as_deref(), Some("eastus"));
        assert_eq!(machine.provisioning_state.as_deref(), Some("Updating"));
        assert!(!machine.is_deleting());
        assert!(machine.is_updating());
        let identity = &machine.identity;
        assert_eq!(
            identity.identity_type,
            IdentityType::SYSTEM_AND_USER_ASSIGNED
        );
        assert_eq!(identity.principal_id.as_deref(), Some("p"));
        let a = ResourceId::user_assigned_identity(SUB, "RG", "ID-A");
        assert_eq!(identity.user_assigned[&a].client_id.as_deref(), Some("ca"));
        let gone = ResourceId::user_assigned_identity(SUB, "rg", "gone");
        assert_eq!(
            identity.user_assigned[&gone],
            UserAssignedIdentity::default()
        );
    }

    #[test]
    fn a_machine_without_identity_has_none() {
        let machine = Machine::from_body(
            vmss(),
            br#"{"properties":{"provisioningState":"Deleting"}}"#,
        )
        .unwrap();
        assert_eq!(machine.identity, MachineIdentity::default());
        assert!(machine.is_deleting());
        assert!(!machine.is_updating());
    }

    #[test]
    fn only_a_running_update_counts_as_updating() {
        let state = |text: Option<&str>| Machine {
            id: vmss(),
            location: None,
            provisioning_state: text.map(str::to_owned),
            identity: MachineIdentity::default(),
        };
        for running in ["Updating", "updating", "Creating", "Migrating"] {
            assert!(state(Some(running)).is_updating(), "{running}");
        }
        for settled in [
            None,
            Some("Succeeded"),
            Some("succeeded"),
            Some("Failed"),
            Some("Canceled"),
        ] {
            assert!(!state(settled).is_updating(), "{settled:?}");
        }
    }

    #[test]
    fn unusable_bodies_are_refused() {
        assert!(Machine::from_body(vmss(), b"[]").is_err());
        assert!(Machine::from_body(vmss(), br#"{"identity":{"type":"Magic"}}"#).is_err());
        assert!(Machine::from_body(
            vmss(),
            br#"{"identity":{"type":"UserAssigned","userAssignedIdentities":{"not-an-id":{}}}}"#
        )
        .is_err());
    }
}
