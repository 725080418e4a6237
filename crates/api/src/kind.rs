//! The three kinds that users write and podid checks at apply time (AzureAssignedIdentity is
//! written by the controller alone and carries no checks).

use kube::Resource;

use crate::{AzureIdentity, AzureIdentityBinding, AzurePodIdentityException};

/// A user-written kind whose spec podid checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecKind {
    /// `AzureIdentity`
    AzureIdentity,
    /// `AzureIdentityBinding`
    AzureIdentityBinding,
    /// `AzurePodIdentityException`
    AzurePodIdentityException,
}

impl SpecKind {
    /// Every checked kind, in the order of `crds()`.
    pub const ALL: [SpecKind; 3] = [
        Self::AzureIdentity,
        Self::AzureIdentityBinding,
        Self::AzurePodIdentityException,
    ];

    /// The kind's name, e.g. `AzureIdentity`.
    pub fn kind(self) -> String {
        match self {
            Self::AzureIdentity => AzureIdentity::kind(&()),
            Self::AzureIdentityBinding => AzureIdentityBinding::kind(&()),
            Self::AzurePodIdentityException => AzurePodIdentityException::kind(&()),
        }
        .into_owned()
    }

    /// The resource's plural name, e.g. `azureidentities`.
    pub fn plural(self) -> String {
        match self {
            Self::AzureIdentity => AzureIdentity::plural(&()),
            Self::AzureIdentityBinding => AzureIdentityBinding::plural(&()),
            Self::AzurePodIdentityException => AzurePodIdentityException::plural(&()),
        }
        .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_resource_types() {
        let names: Vec<(String, String)> = SpecKind::ALL
            .iter()
            .map(|kind| (kind.kind(), kind.plural()))
            .collect();
        let expected = [
            ("AzureIdentity", "azureidentities"),
            ("AzureIdentityBinding", "azureidentitybindings"),
            ("AzurePodIdentityException", "azurepodidentityexceptions"),
        ]
        .map(|(kind, plural)| (kind.to_owned(), plural.to_owned()));
        assert_eq!(names, expected);
    }
}
