//! ARM resource IDs. ARM compares IDs case-insensitively (and `resourceGroups` ≡ `resourcegroups`)
//! but shows the casing a resource was created with, so every ID carries both forms.

use std::fmt;

/// A resource ID as shown (`display`) and as compared (`key`: lower-case, no trailing `/`).
#[derive(Clone, Debug, Eq)]
pub struct ArmId {
    display: String,
    key: String,
}

impl ArmId {
    pub fn new(id: &str) -> Self {
        let display = id.trim_end_matches('/').to_string();
        let key = normalize(&display);
        Self { display, key }
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The comparison key: equal for IDs ARM treats as the same resource.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// True when `self` is `scope` or lies below it (role-assignment scope checks).
    pub fn is_within(&self, scope: &ArmId) -> bool {
        let scope = scope.key();
        scope.is_empty()
            || self.key == scope
            || (self.key.starts_with(scope) && self.key.as_bytes().get(scope.len()) == Some(&b'/'))
    }
}

impl PartialEq for ArmId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl std::hash::Hash for ArmId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Display for ArmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// The comparison key of an ARM ID: lower-case, without a trailing `/`.
pub fn normalize(id: &str) -> String {
    id.trim_end_matches('/').to_ascii_lowercase()
}

pub fn resource_group_id(subscription: &str, group: &str) -> ArmId {
    ArmId::new(&format!(
        "/subscriptions/{subscription}/resourceGroups/{group}"
    ))
}

pub fn provider_resource_id(
    subscription: &str,
    group: &str,
    provider_type: &str,
    name: &str,
) -> ArmId {
    ArmId::new(&format!(
        "/subscriptions/{subscription}/resourceGroups/{group}/providers/{provider_type}/{name}"
    ))
}

pub const USER_ASSIGNED_IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";
pub const VIRTUAL_MACHINE_TYPE: &str = "Microsoft.Compute/virtualMachines";
pub const SCALE_SET_TYPE: &str = "Microsoft.Compute/virtualMachineScaleSets";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_case_insensitively_and_keep_their_casing() {
        let a = ArmId::new(
            "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/DEMO",
        );
        let b = ArmId::new(
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities/demo/",
        );
        assert_eq!(a, b);
        assert!(a.as_str().contains("DEMO"));
        assert!(!b.as_str().ends_with('/'));
    }

    #[test]
    fn scope_containment_respects_segment_boundaries() {
        let vm = ArmId::new(
            "/subscriptions/s/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm",
        );
        assert!(vm.is_within(&ArmId::new("/subscriptions/S/resourcegroups/RG1")));
        assert!(vm.is_within(&ArmId::new("/subscriptions/s")));
        assert!(!vm.is_within(&ArmId::new("/subscriptions/s/resourceGroups/rg")));
        assert!(vm.is_within(&vm.clone()));
    }
}
