//! ARM resource IDs, parsed in one place.
//!
//! `/subscriptions/{sub}[/resourceGroups/{rg}][/providers/{namespace}/{type}/{name}[/{type}/{name}]…]`.
//! Literal segments are matched in any letter case (`resourcegroups` is as good as
//! `resourceGroups`); IDs compare, hash and order ignoring case, as ARM does, while
//! [`Display`](std::fmt::Display) keeps the names as given and spells the literals canonically.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// The resource type of a user-assigned managed identity.
pub const USER_ASSIGNED_IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

/// A parsed ARM resource ID.
#[derive(Clone)]
pub struct ResourceId {
    subscription_id: String,
    resource_group: Option<String>,
    namespace: Option<String>,
    /// `(type, name)` pairs, outermost first; empty unless `namespace` is set.
    resources: Vec<(String, String)>,
    /// The canonical text in lower case: the identity of the ID.
    key: String,
}

/// Why a string is not a resource ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an ARM resource ID: {reason}")]
pub struct ResourceIdError {
    pub input: String,
    pub reason: &'static str,
}

impl ResourceId {
    /// Parses an ID; one trailing `/` is tolerated.
    pub fn parse(input: &str) -> Result<Self, ResourceIdError> {
        let fail = |reason| ResourceIdError {
            input: input.to_string(),
            reason,
        };
        let rest = input
            .strip_prefix('/')
            .ok_or_else(|| fail("it must start with /subscriptions/"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(fail("it has an empty path segment"));
        }
        let mut it = segments.into_iter().peekable();
        let subscription_id = match (it.next(), it.next()) {
            (Some(s), Some(sub)) if s.eq_ignore_ascii_case("subscriptions") => sub.to_string(),
            _ => return Err(fail("it must start with /subscriptions/{subscription}")),
        };

        let mut resource_group = None;
        if it
            .peek()
            .is_some_and(|s| s.eq_ignore_ascii_case("resourceGroups"))
        {
            it.next();
            let name = it
                .next()
                .ok_or_else(|| fail("resourceGroups has no name"))?;
            resource_group = Some(name.to_string());
        }

        let mut namespace = None;
        let mut resources = Vec::new();
        match it.next() {
            None => {}
            Some(s) if s.eq_ignore_ascii_case("providers") => {
                let ns = it
                    .next()
                    .ok_or_else(|| fail("providers has no namespace"))?;
                namespace = Some(ns.to_string());
                loop {
                    match (it.next(), it.next()) {
                        (None, _) => break,
                        (Some(kind), Some(name)) => {
                            if kind.eq_ignore_ascii_case("providers") {
                                return Err(fail("extension resources are not supported"));
                            }
                            resources.push((kind.to_string(), name.to_string()));
                        }
                        (Some(_), None) => return Err(fail("a resource type has no name")),
                    }
                }
                if resources.is_empty() {
                    return Err(fail("a provider namespace needs a resource type and name"));
                }
            }
            Some(_) => return Err(fail("expected resourceGroups or providers")),
        }
        Ok(Self::assemble(
            subscription_id,
            resource_group,
            namespace,
            resources,
        ))
    }

    /// Parses a Kubernetes node's `spec.providerID` (`azure:///subscriptions/…`).
    pub fn from_provider_id(provider_id: &str) -> Result<Self, ResourceIdError> {
        let prefix = "azure://";
        let rest = match provider_id.get(..prefix.len()) {
            Some(p) if p.eq_ignore_ascii_case(prefix) => &provider_id[prefix.len()..],
            _ => {
                return Err(ResourceIdError {
                    input: provider_id.to_string(),
                    reason: "a provider ID starts with azure://",
                });
            }
        };
        Self::parse(rest).map_err(|e| ResourceIdError {
            input: provider_id.to_string(),
            reason: e.reason,
        })
    }

    /// A resource in a resource group: `namespace` such as `Microsoft.Compute` and
    /// `(type, name)` pairs, outermost first.
    pub fn resource(
        subscription_id: &str,
        resource_group: &str,
        namespace: &str,
        resources: &[(&str, &str)],
    ) -> Self {
        Self::assemble(
            subscription_id.to_string(),
            Some(resource_group.to_string()),
            Some(namespace.to_string()),
            resources
                .iter()
                .map(|(t, n)| (t.to_string(), n.to_string()))
                .collect(),
        )
    }

    /// A user-assigned managed identity.
    pub fn user_assigned_identity(subscription_id: &str, resource_group: &str, name: &str) -> Self {
        Self::resource(
            subscription_id,
            resource_group,
            "Microsoft.ManagedIdentity",
            &[("userAssignedIdentities", name)],
        )
    }

    fn assemble(
        subscription_id: String,
        resource_group: Option<String>,
        namespace: Option<String>,
        resources: Vec<(String, String)>,
    ) -> Self {
        let mut id = Self {
            subscription_id,
            resource_group,
            namespace,
            resources,
            key: String::new(),
        };
        id.key = id.to_string().to_ascii_lowercase();
        id
    }

    pub fn subscription_id(&self) -> &str {
        &self.subscription_id
    }

    pub fn resource_group(&self) -> Option<&str> {
        self.resource_group.as_deref()
    }

    /// The provider namespace, e.g. `Microsoft.Compute`.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The full resource type, e.g. `Microsoft.Compute/virtualMachineScaleSets/virtualMachines`.
    pub fn resource_type(&self) -> Option<String> {
        let namespace = self.namespace.as_deref()?;
        let mut out = namespace.to_string();
        for (kind, _) in &self.resources {
            out.push('/');
            out.push_str(kind);
        }
        Some(out)
    }

    /// The `(type, name)` pairs after the namespace, outermost first.
    pub fn resources(&self) -> impl Iterator<Item = (&str, &str)> {
        self.resources
            .iter()
            .map(|(kind, name)| (kind.as_str(), name.as_str()))
    }

    /// The name of the innermost resource (or of the group, or the subscription ID).
    pub fn name(&self) -> &str {
        match (self.resources.last(), &self.resource_group) {
            (Some((_, name)), _) => name,
            (None, Some(group)) => group,
            (None, None) => &self.subscription_id,
        }
    }

    /// Whether the full resource type is `resource_type`, ignoring case.
    pub fn is_type(&self, resource_type: &str) -> bool {
        self.resource_type()
            .is_some_and(|t| t.eq_ignore_ascii_case(resource_type))
    }

    /// The enclosing resource of a child resource (`None` for a top-level resource or a
    /// scope).
    pub fn parent(&self) -> Option<Self> {
        if self.resources.len() < 2 {
            return None;
        }
        let mut resources = self.resources.clone();
        resources.pop();
        Some(Self::assemble(
            self.subscription_id.clone(),
            self.resource_group.clone(),
            self.namespace.clone(),
            resources,
        ))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/subscriptions/{}", self.subscription_id)?;
        if let Some(group) = &self.resource_group {
            write!(f, "/resourceGroups/{group}")?;
        }
        if let Some(namespace) = &self.namespace {
            write!(f, "/providers/{namespace}")?;
        }
        for (kind, name) in &self.resources {
            write!(f, "/{kind}/{name}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({self})")
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for ResourceId {}

impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialOrd for ResourceId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ResourceId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl FromStr for ResourceId {
    type Err = ResourceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VMSS: &str = "/subscriptions/6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c/resourceGroups/Node-RG/providers/Microsoft.Compute/virtualMachineScaleSets/pool0";

    #[test]
    fn parses_every_part_of_a_resource() {
        let id = ResourceId::parse(VMSS).unwrap();
        assert_eq!(id.subscription_id(), "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c");
        assert_eq!(id.resource_group(), Some("Node-RG"));
        assert_eq!(id.namespace(), Some("Microsoft.Compute"));
        assert_eq!(
            id.resource_type().as_deref(),
            Some("Microsoft.Compute/virtualMachineScaleSets")
        );
        assert_eq!(id.name(), "pool0");
        assert_eq!(id.to_string(), VMSS);
        assert!(id.parent().is_none());
    }

    #[test]
    fn child_resources_have_a_parent() {
        let id = ResourceId::parse(&format!("{VMSS}/virtualMachines/3")).unwrap();
        assert_eq!(
            id.resource_type().as_deref(),
            Some("Microsoft.Compute/virtualMachineScaleSets/virtualMachines")
        );
        assert_eq!(id.name(), "3");
        assert_eq!(id.parent().unwrap(), ResourceId::parse(VMSS).unwrap());
        assert_eq!(
            id.resources().collect::<Vec<_>>(),
            vec![
                ("virtualMachineScaleSets", "pool0"),
                ("virtualMachines", "3")
            ]
        );
    }

    #[test]
    fn literals_match_in_any_case_and_are_spelled_canonically() {
        let id = ResourceId::parse(
            "/SUBSCRIPTIONS/s/resourcegroups/rg/PROVIDERS/Microsoft.ManagedIdentity/userAssignedIdentities/Id1",
        )
        .unwrap();
        assert_eq!(
            id.to_string(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/Id1"
        );
        assert!(id.is_type(USER_ASSIGNED_IDENTITY_TYPE));
        assert_eq!(id, ResourceId::user_assigned_identity("S", "RG", "id1"));
    }

    #[test]
    fn scopes_and_subscription_level_resources_parse() {
        let sub = ResourceId::parse("/subscriptions/s").unwrap();
        assert_eq!(sub.name(), "s");
        assert_eq!(sub.resource_group(), None);
        let rg = ResourceId::parse("/subscriptions/s/resourceGroups/rg/").unwrap();
        assert_eq!(rg.to_string(), "/subscriptions/s/resourceGroups/rg");
        assert_eq!(rg.name(), "rg");
        let op = ResourceId::parse(
            "/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/abc",
        )
        .unwrap();
        assert_eq!(op.resource_group(), None);
        assert_eq!(
            op.resource_type().as_deref(),
            Some("Microsoft.Compute/locations/operations")
        );
    }

    #[test]
    fn provider_ids_of_nodes_parse() {
        let id =
            ResourceId::from_provider_id(&format!("azure://{VMSS}/virtualMachines/0")).unwrap();
        assert_eq!(id.parent().unwrap().name(), "pool0");
        assert!(ResourceId::from_provider_id(VMSS).is_err());
        assert!(ResourceId::from_provider_id("aws:///x").is_err());
        assert!(ResourceId::from_provider_id("").is_err());
    }

    #[test]
    fn malformed_ids_are_refused_with_a_reason() {
        for (input, reason) in [
            ("", "it must start with /subscriptions/"),
            ("subscriptions/s", "it must start with /subscriptions/"),
            (
                "/subscriptions",
                "it must start with /subscriptions/{subscription}",
            ),
            (
                "/tenants/t",
                "it must start with /subscriptions/{subscription}",
            ),
            (
                "/subscriptions//resourceGroups/rg",
                "it has an empty path segment",
            ),
            (
                "/subscriptions/s/resourceGroups",
                "resourceGroups has no name",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers",
                "providers has no namespace",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute",
                "a provider namespace needs a resource type and name",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines",
                "a resource type has no name",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/things/x",
                "expected resourceGroups or providers",
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/A.B/t/n/providers/C.D",
                "extension resources are not supported",
            ),
        ] {
            let err = ResourceId::parse(input).unwrap_err();
            assert_eq!(err.reason, reason, "{input}");
        }
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let id = ResourceId::parse(VMSS).unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{VMSS}\""));
        let back: ResourceId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<ResourceId>("\"/nope\"").is_err());
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9._()-]{0,11}"
    }

    prop_compose! {
        fn any_id()(
            sub in segment(),
            group in proptest::option::of(segment()),
            provider in proptest::option::of((segment(), proptest::collection::vec((segment(), segment()), 1..4))),
        ) -> ResourceId {
            let (namespace, resources) = match provider {
                Some((ns, r)) => (Some(ns), r),
                None => (None, Vec::new()),
            };
            ResourceId::assemble(sub, group, namespace, resources)
        }
    }

    /// Flips the case of the characters selected by `mask`.
    fn recase(text: &str, mask: &[bool]) -> String {
        text.chars()
            .zip(mask.iter().cycle())
            .map(|(c, flip)| match (flip, c.is_ascii_lowercase()) {
                (false, _) => c,
                (true, true) => c.to_ascii_uppercase(),
                (true, false) => c.to_ascii_lowercase(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(id in any_id()) {
            let text = id.to_string();
            let back = ResourceId::parse(&text).unwrap();
            prop_assert_eq!(back.to_string(), text);
            prop_assert_eq!(back.subscription_id(), id.subscription_id());
            prop_assert_eq!(back.resource_group(), id.resource_group());
            prop_assert_eq!(back.resource_type(), id.resource_type());
            prop_assert_eq!(back, id);
        }

        #[test]
        fn ids_differing_only_in_case_are_equal(
            id in any_id(),
            mask in proptest::collection::vec(any::<bool>(), 1..16),
        ) {
            let other = ResourceId::parse(&recase(&id.to_string(), &mask)).unwrap();
            prop_assert_eq!(&other, &id);
            prop_assert_eq!(other.cmp(&id), Ordering::Equal);
            let mut a = std::collections::hash_map::DefaultHasher::new();
            let mut b = std::collections::hash_map::DefaultHasher::new();
            other.hash(&mut a);
            id.hash(&mut b);
            prop_assert_eq!(a.finish(), b.finish());
        }

        #[test]
        fn parse_never_panics(text in "(/[A-Za-z./]{0,12}){0,9}") {
            let _ = ResourceId::parse(&text);
            let _ = ResourceId::from_provider_id(&text);
        }
    }
}
