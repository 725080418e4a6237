//! Azure RBAC, reduced to what the emulated APIs check: built-in roles, their actions, and
//! whether a principal's role assignments permit an action on a scope.

use crate::armid::ArmId;

/// A built-in Azure role: its well-known GUID and the actions it grants (`*` wildcards as in
/// Azure role definitions). Only the roles the seed story and upstream's docs use are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinRole {
    pub name: &'static str,
    pub id: &'static str,
    pub actions: &'static [&'static str],
    pub not_actions: &'static [&'static str],
}

pub const BUILTIN_ROLES: &[BuiltinRole] = &[
    BuiltinRole {
        name: "Owner",
        id: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        actions: &["*"],
        not_actions: &[],
    },
    BuiltinRole {
        name: "Contributor",
        id: "b24988ac-6180-42a0-ab88-20f7382dd24c",
        actions: &["*"],
        not_actions: &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
        ],
    },
    BuiltinRole {
        name: "Reader",
        id: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        actions: &["*/read"],
        not_actions: &[],
    },
    BuiltinRole {
        name: "User Access Administrator",
        id: "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        actions: &["*/read", "Microsoft.Authorization/*"],
        not_actions: &[],
    },
    BuiltinRole {
        name: "Managed Identity Operator",
        id: "f1a07417-d97a-45cb-824c-7a7467783830",
        actions: &[
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
        not_actions: &[],
    },
    BuiltinRole {
        name: "Virtual Machine Contributor",
        id: "9980e02c-c2be-4d73-94e8-173b1dc7cf3c",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.Compute/availabilitySets/*",
            "Microsoft.Compute/locations/*",
            "Microsoft.Compute/virtualMachines/*",
            "Microsoft.Compute/virtualMachineScaleSets/*",
            "Microsoft.Network/networkInterfaces/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
        not_actions: &[],
    },
    BuiltinRole {
        name: "DNS Zone Contributor",
        id: "befefa01-2a29-4197-83a8-272ff33ce314",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.Network/dnsZones/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
        not_actions: &[],
    },
];

/// Finds a built-in role by display name (case-insensitive) or GUID, or by a full role
/// definition ID ending in the GUID.
pub fn find_role(name_or_id: &str) -> Option<&'static BuiltinRole> {
    let wanted = name_or_id.rsplit('/').next().unwrap_or(name_or_id);
    BUILTIN_ROLES
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name_or_id) || r.id.eq_ignore_ascii_case(wanted))
}

/// Azure action matching: case-insensitive, `*` matches any run of characters (segments
/// included), and a `/*/` segment may also match nothing: Managed Identity Operator's
/// `userAssignedIdentities/*/assign/action` grants `userAssignedIdentities/assign/action`.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    glob_matches(pattern, action)
        || (pattern.contains("/*/") && glob_matches(&pattern.replace("/*/", "/"), action))
}

fn glob_matches(pattern: &str, action: &str) -> bool {
    fn matches(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| matches(rest, &a[i..])),
            Some((c, rest)) => a
                .split_first()
                .is_some_and(|(x, tail)| x.eq_ignore_ascii_case(c) && matches(rest, tail)),
        }
    }
    matches(pattern.as_bytes(), action.as_bytes())
}

impl BuiltinRole {
    pub fn grants(&self, action: &str) -> bool {
        self.actions.iter().any(|p| action_matches(p, action))
            && !self.not_actions.iter().any(|p| action_matches(p, action))
    }
}

/// One role assignment: a principal (object ID) holds a role on a scope and everything below it.
#[derive(Debug, Clone)]
pub struct RoleAssignment {
    /// The assignment's own name (a GUID).
    pub name: String,
    pub principal_id: String,
    pub role: &'static BuiltinRole,
    pub scope: ArmId,
}

impl RoleAssignment {
    pub fn id(&self) -> String {
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{}",
            self.scope, self.name
        )
    }
}

/// Whether any of `assignments` lets `principal_id` perform `action` on `resource`.
pub fn is_permitted(
    assignments: &[RoleAssignment],
    principal_id: &str,
    action: &str,
    resource: &ArmId,
) -> bool {
    assignments.iter().any(|a| {
        a.principal_id.eq_ignore_ascii_case(principal_id)
            && resource.is_within(&a.scope)
            && a.role.grants(action)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(role: &str, scope: &str) -> RoleAssignment {
        RoleAssignment {
            name: "a".into(),
            principal_id: "P".into(),
            role: find_role(role).expect("known role"),
            scope: ArmId::new(scope),
        }
    }

    #[test]
    fn wildcards_match_across_segments_and_case() {
        assert!(action_matches(
            "*/read",
            "Microsoft.Compute/virtualMachines/read"
        ));
        assert!(action_matches(
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "microsoft.managedidentity/userassignedidentities/assign/action"
        ));
        assert!(!action_matches(
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.ManagedIdentity/userAssignedIdentities/write"
        ));
        assert!(!action_matches(
            "*/read",
            "Microsoft.Compute/virtualMachines/write"
        ));
    }

    #[test]
    fn reader_reads_but_does_not_write() {
        let a = [assignment("Reader", "/subscriptions/s/resourceGroups/rg")];
        let vm = ArmId::new(
            "/subscriptions/s/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/v",
        );
        assert!(is_permitted(
            &a,
            "p",
            "Microsoft.Compute/virtualMachines/read",
            &vm
        ));
        assert!(!is_permitted(
            &a,
            "p",
            "Microsoft.Compute/virtualMachines/write",
            &vm
        ));
        assert!(!is_permitted(
            &a,
            "other",
            "Microsoft.Compute/virtualMachines/read",
            &vm
        ));
    }

    #[test]
    fn contributor_cannot_write_role_assignments() {
        let role = find_role("contributor").expect("known role");
        assert!(role.grants("Microsoft.Compute/virtualMachineScaleSets/write"));
        assert!(!role.grants("Microsoft.Authorization/roleAssignments/write"));
    }

    #[test]
    fn roles_resolve_by_name_id_or_definition_id() {
        assert_eq!(
            find_role("Managed Identity Operator").map(|r| r.id),
            Some("f1a07417-d97a-45cb-824c-7a7467783830")
        );
        assert!(find_role("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/9980e02c-c2be-4d73-94e8-173b1dc7cf3c").is_some());
        assert!(find_role("Nonexistent Role").is_none());
    }
}
