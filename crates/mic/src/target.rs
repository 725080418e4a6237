//! Where an identity's credentials live, which decides whether MIC assigns anything in Azure.

use std::sync::Arc;

use podid_api::{AzureIdentitySpec, IdentityType};
use podid_azure::resource_id::{ResourceId, USER_ASSIGNED_IDENTITY_TYPE};

use crate::diagnostics::IdentityProblem;

/// What an AzureIdentity needs from the VM or scale set of its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityTarget {
    /// Type 0: the user-assigned managed identity must be on the machine, so that IMDS there
    /// issues its tokens. Shared: every assignment and record of the identity holds it.
    Machine(Arc<ResourceId>),
    /// Types 1 and 2 (service principals), and types upstream did not know, which it treated
    /// the same way: nothing to assign in Azure.
    NoMachine,
}

impl IdentityTarget {
    /// The target of an identity spec; the problem when a type-0 identity has no usable
    /// `resourceID`.
    ///
    /// Upstream only matched its unanchored regex, so an ID with text around it passed and
    /// failed later in ARM; here the ID must parse as a user-assigned identity's ARM ID.
    pub fn of(spec: &AzureIdentitySpec) -> Result<Self, IdentityProblem> {
        if spec.identity_type() != IdentityType::UserAssignedManagedIdentity {
            return Ok(Self::NoMachine);
        }
        let text = spec
            .resource_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .ok_or(IdentityProblem::MissingResourceId)?;
        let id = ResourceId::parse(text).map_err(|error| IdentityProblem::InvalidResourceId {
            resource_id: text.to_owned(),
            reason: error.reason,
        })?;
        if !id.is_type(USER_ASSIGNED_IDENTITY_TYPE) {
            return Err(IdentityProblem::NotUserAssignedIdentity {
                resource_id: text.to_owned(),
            });
        }
        Ok(Self::Machine(Arc::new(id)))
    }

    /// The managed identity to put on the machine, if any.
    pub fn resource_id(&self) -> Option<&ResourceId> {
        match self {
            Self::Machine(id) => Some(id.as_ref()),
            Self::NoMachine => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "/subscriptions/sub/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/demo";

    fn spec(kind: Option<i64>, resource_id: Option<&str>) -> AzureIdentitySpec {
        AzureIdentitySpec {
            identity_type: kind.map(IdentityType::from),
            resource_id: resource_id.map(Into::into),
            ..AzureIdentitySpec::default()
        }
    }

    #[test]
    fn type_0_needs_its_identity_on_the_machine() {
        let expected = IdentityTarget::Machine(ResourceId::parse(ID).unwrap().into());
        assert_eq!(
            IdentityTarget::of(&spec(Some(0), Some(ID))),
            Ok(expected.clone())
        );
        // An omitted type means 0.
        assert_eq!(IdentityTarget::of(&spec(None, Some(ID))), Ok(expected));
    }

    #[test]
    fn service_principals_and_unknown_types_need_no_machine() {
        for kind in [1, 2, 7, -1] {
            let target = IdentityTarget::of(&spec(Some(kind), None)).unwrap();
            assert_eq!(target, IdentityTarget::NoMachine, "type {kind}");
            assert_eq!(target.resource_id(), None);
        }
    }

    #[test]
    fn type_0_without_a_usable_resource_id_is_refused() {
        assert_eq!(
            IdentityTarget::of(&spec(Some(0), None)),
            Err(IdentityProblem::MissingResourceId)
        );
        assert_eq!(
            IdentityTarget::of(&spec(Some(0), Some(""))),
            Err(IdentityProblem::MissingResourceId)
        );
        assert_eq!(
            IdentityTarget::of(&spec(Some(0), Some("cb5569f2-8d09-4de1-a007-e02058e11d15"))),
            Err(IdentityProblem::InvalidResourceId {
                resource_id: "cb5569f2-8d09-4de1-a007-e02058e11d15".into(),
                reason: "it must start with /subscriptions/",
            })
        );
        // Upstream's unanchored regex let surrounding text through.
        let padded = format!("  {ID}");
        assert!(matches!(
            IdentityTarget::of(&spec(Some(0), Some(&padded))),
            Err(IdentityProblem::InvalidResourceId { .. })
        ));
        let vm = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm";
        assert_eq!(
            IdentityTarget::of(&spec(Some(0), Some(vm))),
            Err(IdentityProblem::NotUserAssignedIdentity {
                resource_id: vm.into()
            })
        );
    }
}
