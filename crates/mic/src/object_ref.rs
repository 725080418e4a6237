//! A namespaced object's coordinates, the way diagnostics, events and writes name objects.

use std::fmt;

use kube::ResourceExt;

/// `namespace/name` of a namespaced object. Ordered by namespace, then name: the order in
/// which upstream breaks ties between bindings, and in which every output here is sorted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The coordinates of a Kubernetes object (missing parts are empty, as upstream's
    /// `namespace/name` keys were).
    pub fn of(object: &impl ResourceExt) -> Self {
        Self::new(object.namespace().unwrap_or_default(), object.name_any())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use podid_api::{AzureIdentity, AzureIdentitySpec};

    use super::*;

    #[test]
    fn orders_by_namespace_then_name() {
        let mut refs = [
            ObjectRef::new("b", "a"),
            ObjectRef::new("a", "z"),
            ObjectRef::new("a", "b"),
        ];
        refs.sort();
        assert_eq!(
            refs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["a/b", "a/z", "b/a"]
        );
    }

    #[test]
    fn reads_the_coordinates_of_an_object() {
        let mut identity = AzureIdentity::new("demo", AzureIdentitySpec::default());
        assert_eq!(ObjectRef::of(&identity), ObjectRef::new("", "demo"));
        identity.metadata.namespace = Some("team".into());
        assert_eq!(ObjectRef::of(&identity), ObjectRef::new("team", "demo"));
    }
}
